import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, open, readdir, rm, truncate, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { ThocError } from "../../errors/index.js";
import { LocalStore } from "../../store/index.js";
import { DurableHintStore } from "./durable-hints.js";
import { DurableReplicaStore } from "./durable-store.js";
import { MemoryReplicaStore, knownWrite, once, tombstoneRecord } from "./replica-store.js";
import { bytes, collect, filesUnder, fixture, hlc, pieces, readAll, record } from "./durable-testutil.js";

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), "durable-crash.child.js");
const whole = { start: 0, end: 0, whole: true };

test("durable: records, bodies and digests survive a close and reopen of LevelDB", async () => {
  const f = await fixture();
  const m = new MemoryReplicaStore();
  try {
    for (let i = 0; i < 40; i++) {
      const body = bytes(i % 5 === 0 ? 100_000 + i : 10 + i, i);
      const rec = i % 9 === 4 ? tombstoneRecord("b", `k${i}`, hlc.now()) : record("b", `k${i}`, body);
      for (const s of [f.s, m]) await s.put(knownWrite(rec, pieces(rec.tombstone ? Buffer.alloc(0) : body)));
    }
    const stats = await f.s.stats();
    const s = await f.reopen();
    assert.deepEqual(s.recovery, { tmpFiles: 0, orphanFiles: 0 });
    assert.deepEqual(await s.stats(), stats);
    assert.deepEqual(await s.digest(whole, 8), await m.digest(whole, 8));
    assert.deepEqual(await collect(s.listBucket("b")), await collect(m.listBucket("b")));
    for (const r of m.records()) {
      const got = await s.get("b", r.key);
      assert.deepEqual(got!.record, r);
      assert.ok((await readAll(got!.body)).equals(await readAll((await m.get("b", r.key))!.body)));
    }
    assert.equal(stats.records, 40);
    assert.equal(stats.tombstones, 4);
  } finally {
    await f.done();
  }
});

test("durable: a damaged, truncated or missing body is data_loss on a whole read (never served complete) and reported", async () => {
  const losses: ThocError[] = [];
  const f = await fixture({ inlineMax: 1000, onDataLoss: (e) => losses.push(e) });
  try {
    const big = bytes(3 << 20, 9);
    for (const k of ["flip", "short", "gone"]) await f.s.put(knownWrite(record("b", k, big), once(big)));
    const small = bytes(500, 10);
    await f.s.put(knownWrite(record("b", "inline", small), once(small)));
    // All three files hold the same bytes: damage each a different way, and every key is damaged whichever file is its.
    const files = (await filesUnder(f.bodies)).map((x) => path.join(f.bodies, x));
    assert.equal(files.length, 3);
    const fh = await open(files[0]!, "r+");
    await fh.write(Buffer.from([big[12345]! ^ 0xff]), 0, 1, 12345);
    await fh.close();
    await truncate(files[1]!, big.length - 10);
    await rm(files[2]!);
    for (const k of ["flip", "short", "gone"]) {
      const got = await f.s.get("b", k);
      let delivered = 0;
      await assert.rejects((async () => { for await (const c of got!.body) delivered += c.byteLength; })(), (e: ThocError) => e.code === "data_loss" && e.message.includes(`b/${k}`));
      assert.ok(delivered < big.length, "a damaged body is never delivered whole");
    }
    assert.equal(losses.length, 3);
    // Damage of an inline body, through LevelDB itself.
    const dt = f.local.db.sublevel<string, Uint8Array>(["replicas", "d"], { valueEncoding: "view" });
    const [id] = await dt.keys().all();
    await dt.put(id!, Buffer.from(small).fill(0, 0, 3));
    await assert.rejects(readAll((await f.s.get("b", "inline"))!.body), (e: ThocError) => e.code === "data_loss");
    assert.equal(losses.length, 4);
    // A ranged read of a body nobody found damaged is not verified (only its bytes are read).
    const fine = bytes(800, 11);
    await f.s.put(knownWrite(record("b", "fine", fine), once(fine)));
    assert.equal((await readAll((await f.s.get("b", "fine", { range: { start: 100, end: 199 } }))!.body)).length, 100);
  } finally {
    await f.done();
  }
});

test("durable: a body found damaged is refused at once on later reads, even ranged and after a restart, until the same version is written again", async () => {
  const losses: ThocError[] = [];
  const f = await fixture({ onDataLoss: (e) => losses.push(e) });
  try {
    const big = bytes(2 << 20, 12);
    const rec = record("b", "rot", big);
    await f.s.put(knownWrite(rec, once(big)));
    const [file] = (await filesUnder(f.bodies)).map((x) => path.join(f.bodies, x));
    const fh = await open(file!, "r+");
    await fh.write(Buffer.from([big[777]! ^ 0x01]), 0, 1, 777);
    await fh.close();
    await assert.rejects(readAll((await f.s.get("b", "rot"))!.body), (e: ThocError) => e.code === "data_loss");
    assert.equal(losses.length, 1);
    // Refused before any byte, so a coordinator moves on to another replica; counted once.
    await assert.rejects(f.s.get("b", "rot"), (e: ThocError) => e.code === "data_loss" && /damaged/.test(e.message));
    await assert.rejects(f.s.get("b", "rot", { range: { start: 0, end: 9 } }), (e: ThocError) => e.code === "data_loss");
    assert.equal(losses.length, 1);
    assert.deepEqual(await f.s.head("b", "rot"), rec, "the record stays: the version is known, only its body is bad");
    // The mark is durable: a restart does not serve the damaged body again.
    const s = await f.reopen();
    await assert.rejects(s.get("b", "rot"), (e: ThocError) => e.code === "data_loss");
    // Read repair writes the same version again: accepted over the damaged body, then served verified.
    assert.deepEqual(await s.put(knownWrite(rec, pieces(big))), { applied: true, current: rec.version });
    assert.ok((await readAll((await s.get("b", "rot"))!.body)).equals(big));
    // An undamaged row still refuses a second write of its own version.
    assert.equal((await s.put(knownWrite(rec, pieces(big)))).applied, false);
  } finally {
    await f.done();
  }
});

test("durable: open removes leftover temp files and body files no record references, and keeps the rest", async () => {
  const f = await fixture({ inlineMax: 0 });
  try {
    const body = bytes(10_000, 11);
    await f.s.put(knownWrite(record("b", "k", body), once(body)));
    const kept = await filesUnder(f.bodies);
    assert.equal(kept.length, 1);
    await writeFile(path.join(f.bodies, "tmp", "0123456789abcdef01234567"), "half a body");
    await mkdir(path.join(f.bodies, "ab"), { recursive: true });
    await writeFile(path.join(f.bodies, "ab", "ab3456789abcdef012345678"), "placed, never committed");
    await mkdir(path.join(f.bodies, "ff"), { recursive: true });
    await writeFile(path.join(f.bodies, "ff", "ffffffffffffffffffffffff"), "replaced, not yet unlinked");
    await writeFile(path.join(f.bodies, kept[0]!.split(path.sep)[0]!, "eeeeeeeeeeeeeeeeeeeeeeee"), "in the wrong shard");
    const s = await f.reopen();
    assert.deepEqual(s.recovery, { tmpFiles: 1, orphanFiles: 3 });
    assert.deepEqual(await filesUnder(f.bodies), kept);
    assert.ok((await readAll((await s.get("b", "k"))!.body)).equals(body));
  } finally {
    await f.done();
  }
});

test("durable hints: targets and their hints survive a restart; delivered (dropped) hints leave the target list", async () => {
  const f = await fixture();
  const hintsDir = path.join(f.dir, "hints");
  let hints = await DurableHintStore.open({ store: f.local, dir: hintsDir, inlineMax: 0 });
  try {
    assert.deepEqual(await hints.targets(), []);
    const body = bytes(5000, 12);
    const rec = record("b", "k", body);
    await hints.for("node-a").put(knownWrite(rec, once(body)));
    await hints.for("odd id/ü!").put(knownWrite(tombstoneRecord("b", "t", hlc.now()), once()));
    await hints.for("node-c").head("b", "k"); // touched, never written: not a target
    assert.deepEqual((await hints.targets()).sort(), ["node-a", "odd id/ü!"]);
    assert.equal(await hints.count(), 2);
    // A crash during the first hint of a node leaves a directory and no registry entry: swept at open.
    await mkdir(path.join(hintsDir, "node-d", "tmp"), { recursive: true });
    await writeFile(path.join(hintsDir, "node-d", "tmp", "0123456789abcdef01234567"), "x");
    await hints.close();
    await f.s.close();
    await f.local.close();
    f.local = await LocalStore.open(f.dir);
    f.s = await DurableReplicaStore.open({ store: f.local, dir: f.bodies, name: "replicas" });
    hints = await DurableHintStore.open({ store: f.local, dir: hintsDir, inlineMax: 0 });
    assert.deepEqual((await hints.targets()).sort(), ["node-a", "odd id/ü!"]);
    assert.equal(await hints.count(), 2);
    assert.equal(await hints.count("node-a"), 1);
    assert.deepEqual(await readdir(path.join(hintsDir, "node-d", "tmp")), []);
    const got = await hints.for("node-a").get("b", "k");
    assert.ok((await readAll(got!.body)).equals(body));
    assert.equal((await f.s.head("b", "k")), undefined, "hints are apart from the node's own replicas");
    assert.equal(await hints.for("node-a").drop("b", "k", rec.version), true);
    assert.deepEqual(await hints.targets(), ["odd id/ü!"]);
    assert.equal(await hints.count(), 1);
  } finally {
    await hints.close();
    await f.done();
  }
});

/** Runs the child until it prints `stage`, then SIGKILLs it. */
async function killAt(dir: string, stage: string): Promise<void> {
  const p = spawn(process.execPath, [CHILD, dir, stage], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  await new Promise<void>((resolve, reject) => {
    p.stdout.on("data", (b: Buffer) => {
      out += b;
      if (out.includes(stage)) { p.kill("SIGKILL"); resolve(); }
    });
    p.on("exit", (code) => reject(new Error(`child exited (${code}) before ${stage}: ${out}`)));
  });
  await new Promise((r) => p.once("exit", r));
}

for (const [stage, field] of [["streaming", "tmpFiles"], ["placed", "orphanFiles"]] as const) {
  test(`durable: SIGKILL with the new version ${stage}: the restart holds the old record byte-exact and no stray file`, async () => {
    const f = await fixture();
    try {
      await f.s.close();
      await f.local.close();
      await killAt(f.dir, stage);
      f.local = await LocalStore.open(f.dir);
      const s = await DurableReplicaStore.open({ store: f.local, dir: f.bodies, name: "replicas" });
      f.s = s;
      assert.equal(s.recovery[field], 1, JSON.stringify(s.recovery));
      const got = await s.get("b", "k");
      assert.ok((await readAll(got!.body)).equals(bytes(3 << 20, 1)));
      assert.deepEqual(await readdir(path.join(f.bodies, "tmp")), []);
      assert.equal((await filesUnder(f.bodies)).length, 1);
      assert.deepEqual(await s.stats(), { records: 1, tombstones: 0, bytes: 3 << 20 });
    } finally {
      await f.done();
    }
  });
}
