/** Helpers shared by the blob store's unit tests (real LevelDB, real files in a temp dir). */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { LocalStore } from "../../store/index.js";
import { LocalBlobStore } from "./local.js";
import type { PutObjectInput } from "./types.js";

export async function* chunks(...bufs: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const b of bufs) yield b;
}

export async function readAll(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of body) out.push(Buffer.from(c));
  return Buffer.concat(out);
}

export function putInput(bucket: string, key: string, data: Uint8Array | AsyncIterable<Uint8Array>, extra: Partial<PutObjectInput> = {}): PutObjectInput {
  const body = data instanceof Uint8Array ? chunks(data) : data;
  return { bucket, key, body, headers: {}, userMeta: {}, expect: {}, ...extra };
}

/** Every file under dir, relative, sorted. */
export async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.push(path.relative(dir, p));
    }
  };
  await walk(dir);
  return out.sort();
}

/** The files under blobs/data once retired files have been deleted (that runs in the background). */
export async function dataFiles(f: { dir: string; blobs: LocalBlobStore }): Promise<string[]> {
  await f.blobs.settled();
  return filesUnder(path.join(f.dir, "blobs", "data"));
}

export interface Fixture {
  dir: string;
  local: LocalStore;
  blobs: LocalBlobStore;
  /** Closes and reopens everything (a clean restart unless clean=false). */
  reopen(clean?: boolean): Promise<void>;
  dispose(): Promise<void>;
}

export async function fixture(opts: { inlineMax?: number } = {}): Promise<Fixture> {
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-blob-"));
  const f: Fixture = {
    dir,
    local: await LocalStore.open(dir),
    blobs: undefined as unknown as LocalBlobStore,
    async reopen(clean = true) {
      if (clean) await f.blobs.close();
      await f.local.close();
      f.local = await LocalStore.open(dir);
      f.blobs = await LocalBlobStore.open({ store: f.local, ...opts });
    },
    async dispose() {
      await f.blobs.close().catch(() => {});
      await f.local.close().catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
  f.blobs = await LocalBlobStore.open({ store: f.local, ...opts });
  return f;
}

export const codeOf = (e: unknown) => (e as { code?: string; details?: { s3Code?: string } });
/** assert.rejects predicate: a ThocError with this code and S3 code. */
export const isErr = (code: string, s3Code?: string) => (e: unknown) => {
  const x = codeOf(e);
  if (x.code !== code || (s3Code !== undefined && x.details?.s3Code !== s3Code)) {
    throw new Error(`expected ${code}/${s3Code}, got ${x.code}/${x.details?.s3Code}: ${(e as Error).message}`);
  }
  return true;
};
