/**
 * The image references a `docker save` or OCI archive holds, read from the
 * tar itself (manifest.json's RepoTags, or index.json's ref annotations), so
 * MemoryEngine.loadImage answers as a real engine would for the same file.
 */
import { ThocError } from "../errors/index.js";

/** Members of an uncompressed tar (ustar or GNU), name -> content, for the few small files asked for. */
function tarFiles(buf: Buffer, want: ReadonlySet<string>): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let off = 0;
  while (off + 512 <= buf.length) {
    const h = buf.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const str = (a: number, b: number) => h.subarray(a, b).toString("utf8").replace(/\0.*$/s, "");
    const prefix = h.subarray(257, 263).toString("latin1").startsWith("ustar") ? str(345, 500) : "";
    const name = (prefix ? `${prefix}/` : "") + str(0, 100);
    const size = parseInt(str(124, 136).trim() || "0", 8);
    if (!Number.isFinite(size) || size < 0) break;
    const body = off + 512;
    const clean = name.replace(/^\.\//, "");
    if (want.has(clean)) out.set(clean, buf.subarray(body, body + size));
    off = body + Math.ceil(size / 512) * 512;
  }
  return out;
}

export function archiveRefs(buf: Buffer): string[] {
  const files = tarFiles(buf, new Set(["manifest.json", "index.json"]));
  try {
    const manifest = files.get("manifest.json");
    if (manifest) return (JSON.parse(manifest.toString("utf8")) as { RepoTags?: string[] | null }[]).flatMap((m) => m.RepoTags ?? []);
    const index = files.get("index.json");
    if (index) {
      const j = JSON.parse(index.toString("utf8")) as { manifests?: { annotations?: Record<string, string> }[] };
      return (j.manifests ?? []).map((m) => m.annotations?.["io.containerd.image.name"] ?? m.annotations?.["org.opencontainers.image.ref.name"] ?? "").filter(Boolean);
    }
  } catch (err) {
    throw new ThocError("invalid_argument", `the image archive's manifest does not parse: ${(err as Error).message}`);
  }
  throw new ThocError("invalid_argument", "not a docker-save or OCI image archive (no manifest.json or index.json in the tar)");
}
