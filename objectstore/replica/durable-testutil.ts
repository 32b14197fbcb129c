/** Helpers for the durable replica store's tests (real LevelDB and files in a temp dir). */
import { createHash } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { LocalStore } from "../../store/index.js";
import { DurableReplicaStore, type DurableReplicaStoreOptions } from "./durable-store.js";
import { HlcClock } from "../../cluster/index.js";
import type { ReplicaRecord } from "./replica-store.js";
import { FakeClock } from "../../core/index.js";

export const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
export const hlc = new HlcClock("n1", { clock: new FakeClock(1_000_000) });

export function record(bucket: string, key: string, body: Buffer, version = hlc.now()): ReplicaRecord {
  return { bucket, key, version, tombstone: false, size: body.length, sha256: sha(body), meta: JSON.stringify({ etag: "x" }) };
}

export async function readAll(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of body) out.push(Buffer.from(c));
  return Buffer.concat(out);
}

export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
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

/** `size` pseudo-random bytes, the same for the same seed. */
export function bytes(size: number, seed = 1): Buffer {
  const b = Buffer.alloc(size);
  let x = seed * 2654435761;
  for (let i = 0; i < size; i++) { x = (x * 1103515245 + 12345) >>> 0; b[i] = x >>> 24; }
  return b;
}

/** A body in `chunk`-byte pieces. */
export async function* pieces(b: Buffer, chunk = 64 << 10): AsyncGenerator<Uint8Array> {
  for (let off = 0; off < b.length; off += chunk) yield b.subarray(off, Math.min(b.length, off + chunk));
}

export interface Fixture {
  dir: string;
  bodies: string;
  local: LocalStore;
  s: DurableReplicaStore;
  /** Closes and reopens LevelDB and the store (a restart). */
  reopen(): Promise<DurableReplicaStore>;
  done(): Promise<void>;
}

export async function fixture(extra: Partial<DurableReplicaStoreOptions> = {}): Promise<Fixture> {
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-durable-"));
  const bodies = path.join(dir, "replicas");
  const f: Fixture = {
    dir,
    bodies,
    local: await LocalStore.open(dir),
    s: undefined as unknown as DurableReplicaStore,
    async reopen() {
      await f.s.close();
      await f.local.close();
      f.local = await LocalStore.open(dir);
      f.s = await DurableReplicaStore.open({ store: f.local, dir: bodies, name: "replicas", ...extra });
      return f.s;
    },
    async done() {
      await f.s.close();
      await f.local.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
  f.s = await DurableReplicaStore.open({ store: f.local, dir: bodies, name: "replicas", ...extra });
  return f;
}
