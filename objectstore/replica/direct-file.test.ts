import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { ALIGN, BodyFile, WRITE_BATCH, giveBatch, takeBatch } from "./direct-file.js";
import { ReplicaFiles } from "./durable-files.js";

const MiB = 1 << 20;
const O_DIRECT = 0o40000;

/** The open flags of each of this process's descriptors of `file` (from /proc/self/fdinfo). */
function openFlags(file: string): number[] {
  const fds = readdirSync("/proc/self/fd").filter((fd) => { try { return readlinkSync(`/proc/self/fd/${fd}`) === file; } catch { return false; } });
  return fds.map((fd) => Number.parseInt(/flags:\s+([0-7]+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"))![1]!, 8));
}

test("an aligned batch starts on a block boundary: the kernel takes it for O_DIRECT", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-direct-"));
  try {
    const b = takeBatch();
    assert.equal(b.length, MiB);
    randomBytes(MiB).copy(b);
    const f = await BodyFile.create(path.join(dir, "a"), true);
    assert.equal(f.direct, true, "ext4/xfs take O_DIRECT: the test machine's tmpdir must be one of them");
    await f.write(b, MiB, 0);
    await f.datasync();
    await f.close();
    assert.ok((await readFile(path.join(dir, "a"))).equals(b));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("whole blocks go direct, the tail and unaligned buffers buffered: the file holds exactly the bytes written", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-direct-"));
  try {
    const file = path.join(dir, "b");
    const f = await BodyFile.create(file, true);
    assert.deepEqual(openFlags(file).map((fl) => (fl & O_DIRECT) !== 0), [true], "the body file is open with O_DIRECT");
    const a = takeBatch();
    randomBytes(MiB).copy(a);
    const tail = takeBatch();
    randomBytes(MiB).copy(tail);
    const plain = randomBytes(3 * ALIGN + 17);
    await f.write(a, MiB, 0);
    // A tail of 2.5 blocks from an aligned batch: two blocks direct, the rest through the buffered descriptor.
    await f.write(tail, 2 * ALIGN + ALIGN / 2, MiB);
    // An ordinary (unaligned) buffer: all buffered.
    await f.write(plain, plain.length, MiB + 2 * ALIGN + ALIGN / 2);
    assert.deepEqual(openFlags(file).map((fl) => (fl & O_DIRECT) !== 0).sort(), [false, true], "the tail went through a second, buffered descriptor");
    await f.datasync();
    await f.close();
    const want = Buffer.concat([a, tail.subarray(0, 2 * ALIGN + ALIGN / 2), plain]);
    assert.ok((await readFile(file)).equals(want));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

// tmpfs refused O_DIRECT before Linux 6.6 (EINVAL at open: BodyFile falls back to buffered writes for the directory);
// newer kernels take it. Either way the body must be stored whole. No filesystem on the test machine refuses it, so
// the EINVAL branch itself is exercised only where tmpfs is older.
test("on tmpfs (direct on Linux >= 6.6, buffered before) a body is stored whole", { skip: !isTmpfs("/dev/shm") && "no tmpfs at /dev/shm" }, async () => {
  const dir = await mkdtemp(path.join("/dev/shm", "thoc-direct-"));
  try {
    const f = await BodyFile.create(path.join(dir, "c"), true);
    const b = takeBatch();
    randomBytes(MiB).copy(b);
    await f.write(b, MiB - 5, 0);
    await f.datasync();
    await f.close();
    assert.ok((await readFile(path.join(dir, "c"))).equals(b.subarray(0, MiB - 5)));
    // Through the store's writer as well: staged, placed, read back.
    const files = new ReplicaFiles(path.join(dir, "objects"));
    await files.init();
    const body = randomBytes(3 * MiB + 123);
    const s = await files.stage((async function* () { for (let o = 0; o < body.length; o += 65536) yield body.subarray(o, o + 65536); })(), 0, Infinity, () => new Error("too long"));
    await files.place(s);
    assert.ok((await readFile(files.path(s.id))).equals(body));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("past the arena's aligned batches, bodies in flight get ordinary ones, written buffered, stored whole; given back, aligned ones come first", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-direct-"));
  try {
    const held = Array.from({ length: 20 }, () => takeBatch());
    assert.equal(held.every((b) => b.length === WRITE_BATCH), true);
    const last = held[held.length - 1]!;
    randomBytes(MiB).copy(last);
    const file = path.join(dir, "e");
    const f = await BodyFile.create(file, true);
    await f.write(last, MiB, 0);
    assert.deepEqual(openFlags(file).map((fl) => (fl & O_DIRECT) !== 0).sort(), [false, true], "an unaligned batch went through the buffered descriptor");
    await f.datasync();
    await f.close();
    assert.ok((await readFile(file)).equals(last));
    for (const b of held) giveBatch(b);
    const again = takeBatch();
    const g = await BodyFile.create(path.join(dir, "f"), true);
    await g.write(again, MiB, 0);
    assert.deepEqual(openFlags(path.join(dir, "f")).map((fl) => (fl & O_DIRECT) !== 0), [true], "a recycled aligned batch goes direct");
    await g.close();
    giveBatch(again);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("directWrites off: the store's writer opens body files buffered", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-direct-"));
  try {
    const f = await BodyFile.create(path.join(dir, "d"), false);
    assert.equal(f.direct, false);
    await f.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

function isTmpfs(p: string): boolean {
  try {
    return readFileSync("/proc/mounts", "utf8").split("\n").some((l) => { const [, mnt, type] = l.split(" "); return mnt === p && type === "tmpfs"; });
  } catch {
    return false;
  }
}
