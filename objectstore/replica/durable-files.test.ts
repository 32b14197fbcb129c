import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { ReplicaFiles } from "./durable-files.js";

const CHUNK = 64 << 10;

/**
 * A body of `chunks` socket-sized chunks that all share ONE buffer, refilled
 * before each yield (as a reader with a recycled buffer would): only a writer
 * that copies a chunk before asking for the next stores the right bytes.
 */
async function* reused(chunks: number, expected: Buffer[], failAt?: number): AsyncGenerator<Uint8Array> {
  const buf = Buffer.alloc(CHUNK);
  for (let i = 0; i < chunks; i++) {
    if (i === failAt) throw new Error("sender went away");
    buf.fill(i & 0xff);
    buf.writeUInt32BE(i, 0);
    expected.push(Buffer.from(buf));
    yield buf;
  }
}

async function files(): Promise<{ f: ReplicaFiles; dir: string }> {
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-files-"));
  const f = new ReplicaFiles(dir);
  await f.init();
  return { f, dir };
}

test("stage copies each chunk as it takes it: a sender reusing its buffer stores the right bytes, over several write batches", async () => {
  const { f, dir } = await files();
  try {
    const expected: Buffer[] = [];
    // 3.5 MiB: three full 1 MiB write batches and a partial one.
    const s = await f.stage(reused(56, expected), 0, Infinity, () => new Error("too long"));
    const want = Buffer.concat(expected);
    assert.equal(s.size, want.length);
    assert.equal(s.sha256, createHash("sha256").update(want).digest("hex"));
    const got = await readFile(s.tmpPath!);
    assert.ok(got.equals(want), "the file holds the bytes as they were when each chunk was taken");
    await f.place(s);
    assert.ok((await readFile(f.path(s.id))).equals(want));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("stage: a body that fails half way leaves no temp file, and the next body is written whole", async () => {
  const { f, dir } = await files();
  try {
    await assert.rejects(f.stage(reused(40, [], 30), 0, Infinity, () => new Error("too long")), /sender went away/);
    assert.deepEqual(await readdir(f.tmpDir), []);
    const expected: Buffer[] = [];
    const s = await f.stage(reused(20, expected), 0, Infinity, () => new Error("too long"));
    assert.ok((await readFile(s.tmpPath!)).equals(Buffer.concat(expected)));
    await f.discard(s);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
