/**
 * Base images, cached per node with SHA-256 checksums. ImageStore is the seam:
 * LocalImageStore keeps them under <dataDir>/images/<name>/ (alone, when the
 * agent has no object store); ObjectImageStore (images-objectstore.ts) keeps
 * them in the object store's reserved bucket, with this directory as the
 * node-local cache libvirt reads (docs/vms.md).
 */
import { createHash, randomUUID } from "node:crypto";
import { createReadStream, createWriteStream, type WriteStream } from "node:fs";
import { readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { ThocError } from "../errors/index.js";
import { QemuAccess } from "./access.js";
import { imgInfo } from "./disks.js";

export type ImagePart = "disk" | "kernel" | "initrd";
export const IMAGE_PARTS: readonly ImagePart[] = ["disk", "kernel", "initrd"];

export interface ImageFile { part: ImagePart; size: number; sha256: string; format: string }
export interface ImageRecord {
  name: string;
  kind: "disk" | "kernel";
  files: ImageFile[];
  cmdline: string;
  virtualSize: number;
  createdAt: number;
}

export interface ImageImportOptions {
  cmdline?: string;
  /** Checksums the client computed, verified against what arrived. */
  sha256?: Partial<Record<ImagePart, string>>;
  replace?: boolean;
}

/** Receives an image's parts as chunks, in any order of parts but each part's bytes in order. */
export interface ImageWriter {
  write(part: ImagePart, chunk: Uint8Array): Promise<void>;
  commit(): Promise<ImageRecord>;
  abort(): Promise<void>;
}

export interface ImageStore {
  begin(name: string, opts?: ImageImportOptions): Promise<ImageWriter>;
  get(name: string): Promise<ImageRecord | undefined>;
  list(): Promise<ImageRecord[]>;
  delete(name: string): Promise<void>;
  /** Local path of a part, for libvirt. */
  pathOf(name: string, part: ImagePart): string;
  /** Re-hashes the files (cached while size and mtime are unchanged); DATA_LOSS on a mismatch. */
  verify(name: string): Promise<ImageRecord>;
}

export const IMAGE_NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$/;

export function checkImageName(name: string): void {
  if (!IMAGE_NAME_RE.test(name)) throw new ThocError("invalid_argument", `image name "${name}": use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit (e.g. debian-12)`, { field: "name" });
}

export async function sha256File(file: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest("hex");
}

export class LocalImageStore implements ImageStore {
  private readonly verified = new Map<string, string>();
  /** access: who besides the agent reads the files (QEMU's group; vm/access.ts). */
  constructor(readonly dir: string, readonly access: QemuAccess = new QemuAccess()) {}

  private imageDir(name: string) { return path.join(this.dir, name); }
  pathOf(name: string, part: ImagePart): string { return path.join(this.imageDir(name), part); }

  async begin(name: string, opts: ImageImportOptions = {}): Promise<ImageWriter> {
    checkImageName(name);
    if (!opts.replace && await this.get(name)) throw new ThocError("already_exists", `image ${name} already exists: delete it first (thoc-node image delete ${name}) or import with --replace`, { image: name });
    await this.access.dir(this.dir);
    const tmp = path.join(this.dir, `.import-${name}-${randomUUID().slice(0, 8)}`);
    await this.access.dir(tmp);
    const parts = new Map<ImagePart, { ws: WriteStream; hash: ReturnType<typeof createHash>; size: number }>();
    const closeAll = () => Promise.all([...parts.values()].map((p) => new Promise<void>((r, j) => p.ws.end((e?: Error | null) => (e ? j(e) : r())))));
    const self = this;
    return {
      async write(part, chunk) {
        if (!IMAGE_PARTS.includes(part)) throw new ThocError("invalid_argument", `image part "${part}": use disk, kernel or initrd`);
        let p = parts.get(part);
        if (!p) {
          p = { ws: createWriteStream(path.join(tmp, part), { mode: 0o600 }), hash: createHash("sha256"), size: 0 };
          parts.set(part, p);
        }
        p.hash.update(chunk);
        p.size += chunk.length;
        if (!p.ws.write(chunk)) await new Promise<void>((r) => p!.ws.once("drain", () => r()));
      },
      async commit() {
        try {
          await closeAll();
          // QEMU reads kernels, initrds and base disks: its group may (vm/access.ts).
          for (const part of parts.keys()) await self.access.file(path.join(tmp, part));
          const has = (x: ImagePart) => parts.has(x);
          if (has("disk") && (has("kernel") || has("initrd"))) throw new ThocError("invalid_argument", "an image is either a disk image or a kernel (+ initrd), not both");
          if (!has("disk") && !has("kernel")) throw new ThocError("invalid_argument", "no image data: give a disk image FILE, or --kernel FILE (with --initrd FILE)");
          if (has("initrd") && !has("kernel")) throw new ThocError("invalid_argument", "--initrd needs --kernel");
          const files: ImageFile[] = [];
          let virtualSize = 0;
          for (const [part, p] of parts) {
            const sha256 = p.hash.digest("hex");
            const want = opts.sha256?.[part];
            if (want && want.toLowerCase() !== sha256) throw new ThocError("data_loss", `image ${name}: ${part} arrived with SHA-256 ${sha256}, the client read ${want}: the upload was corrupted, import again`);
            if (p.size === 0) throw new ThocError("invalid_argument", `image ${name}: the ${part} file is empty`);
            let format = "";
            if (part === "disk") {
              const info = await imgInfo(path.join(tmp, part));
              if (info.format !== "qcow2" && info.format !== "raw") throw new ThocError("invalid_argument", `image ${name}: ${info.format} disk images are not supported: convert to qcow2 (qemu-img convert -O qcow2 IN OUT)`);
              if (info.backing) throw new ThocError("invalid_argument", `image ${name}: the qcow2 has a backing file (${info.backing}): flatten it first (qemu-img convert -O qcow2 IN OUT)`);
              format = info.format;
              virtualSize = info.virtualSize;
            }
            files.push({ part, size: p.size, sha256, format });
          }
          const rec: ImageRecord = {
            name, kind: has("disk") ? "disk" : "kernel", files: files.sort((a, b) => IMAGE_PARTS.indexOf(a.part) - IMAGE_PARTS.indexOf(b.part)),
            cmdline: opts.cmdline ?? "", virtualSize, createdAt: Date.now(),
          };
          if (rec.kind === "disk" && rec.cmdline) throw new ThocError("invalid_argument", "--cmdline is for kernel images only");
          await writeFile(path.join(tmp, "image.json"), JSON.stringify(rec, null, 2));
          const dest = self.imageDir(name);
          await rm(dest, { recursive: true, force: true });
          await rename(tmp, dest);
          self.verified.delete(name);
          return rec;
        } catch (err) {
          await rm(tmp, { recursive: true, force: true });
          throw err;
        }
      },
      async abort() {
        await closeAll().catch(() => {});
        await rm(tmp, { recursive: true, force: true });
      },
    };
  }

  async get(name: string): Promise<ImageRecord | undefined> {
    if (!IMAGE_NAME_RE.test(name)) return undefined;
    try {
      return JSON.parse(await readFile(path.join(this.imageDir(name), "image.json"), "utf8")) as ImageRecord;
    } catch {
      return undefined;
    }
  }

  async list(): Promise<ImageRecord[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const recs = await Promise.all(names.filter((n) => !n.startsWith(".")).map((n) => this.get(n)));
    return recs.filter((r): r is ImageRecord => r !== undefined).sort((a, b) => a.name.localeCompare(b.name));
  }

  async delete(name: string): Promise<void> {
    if (!(await this.get(name))) throw new ThocError("not_found", `image ${name} is not on this node (thoc-node image list)`, { image: name });
    await rm(this.imageDir(name), { recursive: true, force: true });
    this.verified.delete(name);
  }

  async verify(name: string): Promise<ImageRecord> {
    const rec = await this.get(name);
    if (!rec) throw new ThocError("not_found", `image ${name} is not on this node: import it with \`thoc-node image import ${name} FILE\` (thoc-node image list shows what is here)`, { image: name });
    const stamps = await Promise.all(rec.files.map(async (f) => { const s = await stat(this.pathOf(name, f.part)); return `${f.part}:${s.size}:${s.mtimeMs}`; }));
    const key = stamps.join(",");
    if (this.verified.get(name) === key) return rec;
    for (const f of rec.files) {
      const got = await sha256File(this.pathOf(name, f.part));
      if (got !== f.sha256) throw new ThocError("data_loss", `image ${name}: ${f.part} has SHA-256 ${got}, expected ${f.sha256}: the cached file is corrupt; import the image again`, { image: name });
    }
    this.verified.set(name, key);
    return rec;
  }
}
