/**
 * Reads what an image archive holds while its bytes stream past, without
 * keeping it: a `docker save` / `podman save` archive (manifest.json with
 * RepoTags and the config's digest) or an OCI image layout archive
 * (oci-layout + index.json, the manifest and its config as small blobs),
 * plain or gzipped. An import is checked with it before the archive is kept,
 * so `ct image import` of a file that is no image is refused at once rather
 * than when a node first tries to load it.
 */
import { createGunzip, type Gunzip } from "node:zlib";
import { ThocError } from "../errors/index.js";

export interface ArchiveInfo {
  format: "docker" | "oci";
  /** Image references inside (RepoTags; OCI ref-name annotations). */
  refs: string[];
  /** "sha256:<hex>" of the image config (the engine's image id), "" when the archive does not say. */
  imageId: string;
}

const BLOCK = 512;
/** Manifests and configs are a few KiB; layers, which can also be small, are skipped past this. */
const SMALL_BLOB = 64 << 10;
/** What the scanner keeps at most, whatever the archive holds. */
const KEEP_MAX = 8 << 20;
const TOP_FILES = new Set(["manifest.json", "index.json", "oci-layout", "repositories"]);
const BLOB_RE = /^blobs\/sha256\/([0-9a-f]{64})$/;

const notImage = (why: string) =>
  new ThocError("invalid_argument", `not a container image archive (${why}): give a \`docker save\` / \`podman save\` archive or an OCI archive (podman save --format oci-archive)`);

/** A push parser of tar (ustar, pax and GNU long names) that keeps the few small files it is asked for. */
class TarReader {
  private buf: Buffer = Buffer.alloc(0);
  /** Bytes of the current entry's body still to come (then its padding). */
  private left = 0;
  private pad = 0;
  private current?: { name: string; size: number; keep: boolean; kind: "file" | "pax" | "longname"; parts: Buffer[] };
  private nextName?: string;
  private zeroBlocks = 0;
  private kept = 0;
  readonly files = new Map<string, Buffer>();
  entries = 0;
  ended = false;

  constructor(private readonly want: (name: string, size: number) => boolean) {}

  write(chunk: Buffer): void {
    let c = chunk;
    while (c.length && !this.ended) {
      if (this.left > 0) {
        const n = Math.min(this.left, c.length);
        if (this.current?.keep) this.current.parts.push(Buffer.from(c.subarray(0, n)));
        this.left -= n;
        c = c.subarray(n);
        if (this.left === 0) this.finishEntry();
        continue;
      }
      if (this.pad > 0) {
        const n = Math.min(this.pad, c.length);
        this.pad -= n;
        c = c.subarray(n);
        continue;
      }
      // A header: gather 512 bytes.
      const need = BLOCK - this.buf.length;
      this.buf = Buffer.concat([this.buf, c.subarray(0, need)]);
      c = c.subarray(Math.min(need, c.length));
      if (this.buf.length < BLOCK) return;
      const h = this.buf;
      this.buf = Buffer.alloc(0);
      this.header(h);
    }
  }

  private header(h: Buffer): void {
    if (h.every((b) => b === 0)) {
      if (++this.zeroBlocks >= 2) this.ended = true;
      return;
    }
    this.zeroBlocks = 0;
    const sum = h.reduce((s, b, i) => s + (i >= 148 && i < 156 ? 32 : b), 0);
    if (sum !== octal(h.subarray(148, 156))) throw notImage("not a tar file");
    const str = (a: number, b: number) => h.subarray(a, b).toString("utf8").replace(/\0.*$/s, "");
    const ustar = h.subarray(257, 262).toString("latin1") === "ustar";
    let name = str(0, 100);
    if (ustar && str(345, 500)) name = `${str(345, 500)}/${name}`;
    if (this.nextName !== undefined) { name = this.nextName; this.nextName = undefined; }
    name = name.replace(/^\.\//, "");
    const size = sizeOf(h.subarray(124, 136));
    const type = String.fromCharCode(h[156]!);
    const kind = type === "x" ? "pax" : type === "L" ? "longname" : type === "0" || type === "\0" || type === "7" ? "file" : "other";
    this.entries++;
    const keep = kind === "pax" || kind === "longname" || (kind === "file" && this.want(name, size) && this.kept + size <= KEEP_MAX);
    if (keep) this.kept += size;
    this.current = kind === "other" ? undefined : { name, size, keep, kind, parts: [] };
    this.left = size;
    this.pad = (BLOCK - (size % BLOCK)) % BLOCK;
    if (size === 0) this.finishEntry();
  }

  private finishEntry(): void {
    const e = this.current;
    this.current = undefined;
    if (!e?.keep) return;
    const body = Buffer.concat(e.parts);
    if (e.kind === "file") this.files.set(e.name, body);
    else if (e.kind === "longname") this.nextName = body.toString("utf8").replace(/\0.*$/s, "");
    else {
      // pax records: "<len> key=value\n"; only path matters here.
      const m = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(body.toString("utf8"));
      if (m) this.nextName = m[1];
    }
  }
}

function octal(b: Buffer): number {
  const s = b.toString("latin1").replace(/[\0 ]+$/g, "").trim();
  return s ? parseInt(s, 8) : 0;
}

function sizeOf(b: Buffer): number {
  // GNU base-256 for sizes past 8 GiB.
  if (b[0]! & 0x80) {
    let n = 0;
    for (let i = 1; i < b.length; i++) n = n * 256 + b[i]!;
    return n;
  }
  const n = octal(b);
  if (!Number.isFinite(n)) throw notImage("a tar header with a bad size");
  return n;
}

const parse = (b: Buffer | undefined, what: string): unknown => {
  if (!b) return undefined;
  try { return JSON.parse(b.toString("utf8")); } catch { throw notImage(`its ${what} is not JSON`); }
};

/** Feeds an archive's bytes in order, then says what it holds (or throws invalid_argument). */
export class ArchiveScanner {
  private readonly tar = new TarReader((name, size) => TOP_FILES.has(name) || (BLOB_RE.test(name) && size <= SMALL_BLOB));
  private gunzip?: Gunzip;
  private gunzipDone?: Promise<void>;
  private first = true;
  private error?: unknown;

  write(chunk: Uint8Array): void {
    if (this.error || !chunk.length) return;
    const b = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (this.first) {
      this.first = false;
      if (b[0] === 0x1f && b[1] === 0x8b) {
        const gz = createGunzip();
        this.gunzip = gz;
        gz.on("data", (d: Buffer) => this.feed(d));
        this.gunzipDone = new Promise((resolve) => {
          gz.on("end", resolve);
          gz.on("error", (err) => { this.error ??= notImage(`gzip: ${err.message}`); resolve(); });
        });
      }
    }
    if (this.gunzip) this.gunzip.write(b);
    else this.feed(b);
  }

  private feed(b: Buffer): void {
    if (this.error) return;
    try { this.tar.write(b); } catch (err) { this.error = err; }
  }

  async end(): Promise<ArchiveInfo> {
    if (this.gunzip) {
      this.gunzip.end();
      await this.gunzipDone;
    }
    if (this.error) throw this.error;
    if (this.first) throw notImage("it is empty");
    if (!this.tar.entries) throw notImage("no tar entries");
    const files = this.tar.files;
    const manifest = parse(files.get("manifest.json"), "manifest.json");
    if (Array.isArray(manifest) && manifest.length) return dockerInfo(manifest);
    const index = parse(files.get("index.json"), "index.json");
    if (index && files.has("oci-layout")) return ociInfo(index, files);
    throw notImage("no manifest.json or oci-layout + index.json inside");
  }
}

interface DockerManifestEntry { Config?: unknown; RepoTags?: unknown }

function dockerInfo(manifest: unknown[]): ArchiveInfo {
  const refs: string[] = [];
  let imageId = "";
  for (const e of manifest as DockerManifestEntry[]) {
    if (Array.isArray(e?.RepoTags)) for (const t of e.RepoTags) if (typeof t === "string" && !refs.includes(t)) refs.push(t);
    // "<hex>.json" (classic) or "blobs/sha256/<hex>" (Docker 25+).
    const m = typeof e?.Config === "string" ? /([0-9a-f]{64})(?:\.json)?$/.exec(e.Config) : null;
    if (m && !imageId) imageId = `sha256:${m[1]}`;
  }
  return { format: "docker", refs, imageId };
}

interface OciDescriptor { digest?: unknown; mediaType?: unknown; annotations?: Record<string, unknown> }

function ociInfo(index: unknown, files: Map<string, Buffer>): ArchiveInfo {
  const manifests = (index as { manifests?: OciDescriptor[] }).manifests;
  if (!Array.isArray(manifests) || !manifests.length) throw notImage("its index.json lists no manifest");
  const refs: string[] = [];
  let imageId = "";
  for (const d of manifests) {
    const a = d.annotations ?? {};
    // containerd's full name beats the OCI ref name (often just a tag).
    const ref = a["io.containerd.image.name"] ?? a["org.opencontainers.image.ref.name"];
    if (typeof ref === "string" && ref && !refs.includes(ref)) refs.push(ref);
    const hex = typeof d.digest === "string" ? /^sha256:([0-9a-f]{64})$/.exec(d.digest)?.[1] : undefined;
    const m = hex ? parse(files.get(`blobs/sha256/${hex}`), "image manifest") as { config?: OciDescriptor } | undefined : undefined;
    const cfg = typeof m?.config?.digest === "string" ? m.config.digest : "";
    if (!imageId && /^sha256:[0-9a-f]{64}$/.test(cfg)) imageId = cfg;
  }
  return { format: "oci", refs, imageId };
}
