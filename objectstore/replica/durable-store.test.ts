import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { ThocError } from "../../errors/index.js";
import { MemoryReplicaStore, knownWrite, once, subRange, tombstoneRecord, type PosRange, type ReplicaStore, type ReplicaWrite } from "./replica-store.js";
import { RING_SIZE, placementKey, ringHash } from "./ring.js";
import { seededRandom as prng } from "../../core/index.js";
import { bytes, collect, filesUnder, fixture, hlc, pieces, readAll, record, sha } from "./durable-testutil.js";

async function text(store: ReplicaStore, b: string, k: string): Promise<string | undefined> {
  const got = await store.get(b, k);
  if (!got) return undefined;
  const body = await readAll(got.body);
  return got.record.tombstone ? "<tombstone>" : body.toString();
}

/** Both layouts: small bodies inline in LevelDB (default), and every body in a file. */
for (const inlineMax of [undefined, 0]) {
  const where = inlineMax === 0 ? "bodies in files" : "small bodies inline";

  test(`durable (${where}): last writer wins by HLC; an older or equal version is not applied and its body not read`, async () => {
    const f = await fixture({ inlineMax });
    try {
      const s = f.s;
      const v1 = record("b", "k", Buffer.from("one"));
      const v2 = record("b", "k", Buffer.from("two"));
      assert.deepEqual(await s.put(knownWrite(v2, once(Buffer.from("two")))), { applied: true, current: v2.version });
      let read = false;
      const untouched = (async function* () { read = true; yield Buffer.from("one"); })();
      assert.deepEqual(await s.put(knownWrite(v1, untouched)), { applied: false, current: v2.version });
      assert.equal(read, false, "the older body was not read");
      assert.equal(await text(s, "b", "k"), "two");
      assert.equal((await s.put(knownWrite(v2, once(Buffer.from("two"))))).applied, false, "same version again is a no-op");
      assert.equal((await s.put(knownWrite(tombstoneRecord("b", "k", v1.version), once()))).applied, false, "an older tombstone loses to a newer put");
      const tomb = tombstoneRecord("b", "k", hlc.now());
      assert.equal((await s.put(knownWrite(tomb, once()))).applied, true);
      assert.equal(await text(s, "b", "k"), "<tombstone>");
      assert.deepEqual(await s.head("b", "k"), tomb);
      assert.equal((await s.put(knownWrite(v2, once(Buffer.from("two"))))).applied, false, "a put older than the tombstone cannot resurrect");
      const big = bytes(200 << 10);
      const v3 = record("b", "k", big);
      assert.equal((await s.put(knownWrite(v3, pieces(big)))).applied, true, "a put newer than the tombstone wins");
      assert.ok((await readAll((await s.get("b", "k"))!.body)).equals(big));
      assert.deepEqual(await s.stats(), { records: 1, tombstones: 0, bytes: big.length });
      // Replaced versions leave no file behind.
      const v4 = record("b", "k", Buffer.from("four"));
      await s.put(knownWrite(v4, once(Buffer.from("four"))));
      await f.s.settled();
      assert.equal((await filesUnder(f.bodies)).length, inlineMax === 0 ? 1 : 0);
    } finally {
      await f.done();
    }
  });

  test(`durable (${where}): a short, long or corrupt body, or a missing trailer, is data_loss: nothing stored, no temp file left`, async () => {
    const f = await fixture({ inlineMax });
    try {
      const s = f.s;
      for (const body of [Buffer.from("hello world"), bytes(300 << 10)]) {
        const rec = record("b", "k", body);
        const corrupt = Buffer.from(body);
        corrupt[5] ^= 1;
        const bad = [once(body.subarray(0, 5)), once(body, Buffer.from("!")), pieces(corrupt), pieces(Buffer.concat([body, body]))];
        for (const b of bad) await assert.rejects(s.put(knownWrite(rec, b)), (e: ThocError) => e.code === "data_loss" && /nothing stored/.test(e.message));
        await assert.rejects(s.put(knownWrite(rec, (async function* () { yield body.subarray(0, 3); throw new Error("connection reset"); })())), /connection reset/);
        await assert.rejects(s.put(knownWrite({ ...rec, sha256: "zz" }, once(body))), (e: ThocError) => e.code === "invalid_argument");
        const { size: _s, sha256: _h, ...header } = rec;
        const noTrailer: ReplicaWrite = { header, body: pieces(body), expected: () => { throw new ThocError("data_loss", "stream ended before the trailer; nothing stored"); } };
        await assert.rejects(s.put(noTrailer), (e: ThocError) => e.code === "data_loss");
        await assert.rejects(s.put({ header, body: pieces(body), expected: () => ({ size: rec.size, sha256: "0".repeat(64) }) }), (e: ThocError) => e.code === "data_loss");
        await assert.rejects(s.put({ header, body: pieces(body), expected: () => ({ size: rec.size + 1, sha256: rec.sha256 }) }), (e: ThocError) => e.code === "data_loss");
        await assert.rejects(s.put(knownWrite({ ...tombstoneRecord("b", "k", hlc.now()) }, once(Buffer.from("x")))), (e: ThocError) => e.code === "data_loss" || e.code === "invalid_argument");
        assert.equal(await s.head("b", "k"), undefined);
        assert.deepEqual(await filesUnder(f.bodies), [], "no temp or body file left");
        // The trailer decides size, digest and (when it carries one) the meta.
        const out = await s.put({ header, body: pieces(body), expected: () => ({ size: rec.size, sha256: rec.sha256, meta: "{\"etag\":\"final\"}" }) });
        assert.equal(out.applied, true);
        assert.deepEqual(await s.head("b", "k"), { ...rec, meta: "{\"etag\":\"final\"}" });
        assert.ok((await readAll((await s.get("b", "k"))!.body)).equals(body));
        assert.equal(await s.drop("b", "k", rec.version), true);
      }
      assert.deepEqual(await filesUnder(f.bodies), []);
    } finally {
      await f.done();
    }
  });

  test(`durable (${where}): ranged gets return exactly the bytes the memory store does; empty bodies and tombstones read empty`, async () => {
    const f = await fixture({ inlineMax });
    const m = new MemoryReplicaStore();
    try {
      for (const [key, body] of [["small", bytes(1000, 2)], ["big", bytes((2 << 20) + 77, 3)], ["empty", Buffer.alloc(0)]] as const) {
        const rec = record("b", key, body);
        for (const st of [f.s, m]) await st.put(knownWrite(rec, pieces(body, 100_000)));
        const n = body.length;
        for (const range of [{ start: 0, end: 0 }, { start: 10, end: 20 }, { start: n - 5, end: n + 100 }, { start: n + 10, end: n + 20 }, { start: 0, end: n - 1 }, { start: 999, end: (1 << 20) + 3 }]) {
          const want = await readAll((await m.get("b", key, { range }))!.body);
          const got = await readAll((await f.s.get("b", key, { range }))!.body);
          assert.ok(got.equals(want), `${key} ${JSON.stringify(range)}: ${got.length} bytes, want ${want.length}`);
        }
        assert.ok((await readAll((await f.s.get("b", key))!.body)).equals(body));
      }
      const t = tombstoneRecord("b", "gone", hlc.now());
      await f.s.put(knownWrite(t, once()));
      const got = await f.s.get("b", "gone");
      assert.deepEqual(got?.record, t);
      assert.equal((await readAll(got!.body)).length, 0);
      assert.equal(await f.s.get("b", "never"), undefined);
    } finally {
      await f.done();
    }
  });
}

test("durable: listBucket matches the memory store: UTF-8 byte order (U+1F600 after U+FFFD), prefix, after, limit, internal keys only on request", async () => {
  const f = await fixture();
  const m = new MemoryReplicaStore();
  try {
    const keys = ["a", "a\uFFFD", "a\u{1F600}", "a\u{1F600}b", "ab", "é", "z", "", "\u0000x", "\u0001mp/x", "\u0001mp/y", "\u0001", "b/c", "b/d", "\u0002"];
    for (const bucket of ["b", "bb", "a"]) {
      for (const k of keys) {
        const rec = k === "ab" ? tombstoneRecord(bucket, k, hlc.now()) : record(bucket, k, Buffer.from(`${bucket}:${k}`));
        for (const st of [f.s, m]) await st.put(knownWrite(rec, once(Buffer.from(rec.tombstone ? "" : `${bucket}:${k}`))));
      }
    }
    const plain = (await collect(f.s.listBucket("b"))).map((r) => r.key);
    assert.ok(plain.indexOf("a\uFFFD") < plain.indexOf("a\u{1F600}"), "UTF-8 byte order, not UTF-16");
    assert.ok(plain.includes("ab"), "tombstones are listed");
    assert.ok(!plain.some((k) => k.startsWith("\u0001")), "internal keys are hidden");
    assert.ok(plain.includes("\u0000x") && plain.includes("\u0002"));
    const cases = [
      {}, { prefix: "a" }, { after: "a" }, { after: "a\uFFFD" }, { prefix: "a", after: "a\uFFFD" }, { prefix: "\u0001" }, { prefix: "\u0001mp/" },
      { limit: 2 }, { limit: 0 }, { prefix: "b/" }, { prefix: "b/", after: "b/c" }, { after: "zz" }, { prefix: "a", after: "0" }, { prefix: "q" }, { after: "\u0000" },
      { prefix: "\u0001", after: "\u0001mp/x" },
    ];
    for (const opts of cases) {
      for (const bucket of ["b", "bb", "c"]) {
        assert.deepEqual(await collect(f.s.listBucket(bucket, opts)), await collect(m.listBucket(bucket, opts)), `${bucket} ${JSON.stringify(opts)}`);
      }
    }
  } finally {
    await f.done();
  }
});

test("durable: listBucket reads thousands of records in batches, the same as the memory store: limits across batch edges, internal keys skipped mid-batch, prefixes at the edge of a range", async () => {
  const f = await fixture();
  const m = new MemoryReplicaStore();
  try {
    const keys: string[] = [];
    for (let i = 0; i < 1500; i++) keys.push(`k/${String(i).padStart(5, "0")}`);
    // 1,200 part-like internal keys between "" and "k/": a plain listing must skip them, wherever a batch ends.
    for (let i = 0; i < 1200; i++) keys.push(`\u0001p/up/${String(i).padStart(5, "0")}`);
    keys.push("a", "a\ud7ff", "a\ud7ffz", "a\uffff", "a\uffffz", "a\u{1F600}", "a\u{1F600}z", "\u0000z", "z");
    // 32 at a time: LevelDB commits concurrent synced writes together.
    for (let i = 0; i < keys.length; i += 32) {
      await Promise.all(keys.slice(i, i + 32).map(async (k) => {
        const rec = record("b", k, Buffer.from("x"));
        for (const st of [f.s, m]) await st.put(knownWrite(rec, once(Buffer.from("x"))));
      }));
    }
    const cases = [
      {}, { limit: 63 }, { limit: 64 }, { limit: 65 }, { limit: 320 }, { limit: 1400 }, { prefix: "k/" }, { prefix: "k/", limit: 1000 },
      { prefix: "\u0001p/up/" }, { prefix: "\u0001p/up/", limit: 10_000 }, { prefix: "\u0001p/up/", after: "\u0001p/up/00099" }, { prefix: "\u0001" },
      { prefix: "a\ud7ff" }, { prefix: "a\uffff" }, { prefix: "a\u{1F600}" }, { prefix: "a" }, { after: "a\uffff" }, { after: "k/01000", limit: 70 },
    ];
    for (const opts of cases) {
      const got = await collect(f.s.listBucket("b", opts));
      assert.deepEqual(got, await collect(m.listBucket("b", opts)), JSON.stringify(opts));
      assert.ok(got.length > 0, JSON.stringify(opts));
    }
    assert.equal((await collect(f.s.listBucket("b", { prefix: "\u0001p/up/" }))).length, 1200);
  } finally {
    await f.done();
  }
});

test("durable: list and digest equal a memory store holding the same records, over whole, plain, wrapping and empty ranges", async () => {
  const f = await fixture({ inlineMax: 8 });
  const m = new MemoryReplicaStore();
  try {
    const rnd = prng(11);
    const stores: ReplicaStore[] = [f.s, m];
    for (let i = 0; i < 300; i++) {
      const key = `k${i}-${"\u{1F600}\uFFFDé".slice(0, i % 4)}`;
      const body = Buffer.from(`value ${i}`.repeat(1 + (i % 3)));
      const rec = i % 7 === 0 ? tombstoneRecord("bkt", key, hlc.now()) : record(i % 2 ? "bkt" : "other", key, body);
      for (const st of stores) await st.put(knownWrite(rec, once(rec.tombstone ? Buffer.alloc(0) : body)));
      if (i % 10 === 3) for (const st of stores) assert.equal(await st.drop(rec.bucket, rec.key, rec.version), true);
      if (i % 10 === 5) {
        const t = tombstoneRecord(rec.bucket, rec.key, hlc.now());
        for (const st of stores) await st.put(knownWrite(t, once()));
      }
    }
    const whole: PosRange = { start: 0, end: 0, whole: true };
    assert.deepEqual(await collect(f.s.list(whole)), m.records());
    const ranges: PosRange[] = [whole, { start: 12345, end: 12345, whole: true }, { start: 5, end: 5 }, { start: RING_SIZE - 1, end: 0 }];
    for (let t = 0; t < 40; t++) ranges.push({ start: Math.floor(rnd() * RING_SIZE), end: Math.floor(rnd() * RING_SIZE) });
    for (const range of ranges) {
      const parts = 1 + Math.floor(rnd() * 16);
      assert.deepEqual(await f.s.digest(range, parts), await m.digest(range, parts), JSON.stringify(range));
      const i = Math.floor(rnd() * parts);
      assert.deepEqual(await collect(f.s.list(subRange(range, parts, i))), await collect(m.list(subRange(range, parts, i))));
    }
    // Paging with `after` and `limit` walks the same records.
    const recs = m.records();
    for (const at of [0, 17, 150, recs.length - 1]) {
      const r = recs[at]!;
      const after = { pos: ringHash(placementKey(r.bucket, r.key)), pkey: placementKey(r.bucket, r.key) };
      for (const range of [whole, { start: (after.pos - 1000 + RING_SIZE) % RING_SIZE, end: (after.pos + RING_SIZE / 2) % RING_SIZE }]) {
        assert.deepEqual(await collect(f.s.list(range, { after, limit: 20 })), await collect(m.list(range, { after, limit: 20 })));
      }
    }
  } finally {
    await f.done();
  }
});

test("durable: concurrent puts of one key: the newest wins whatever finishes first, and only its file remains", async () => {
  const f = await fixture({ inlineMax: 0 });
  try {
    const older = bytes(3 << 20, 4);
    const newer = bytes(1 << 20, 5);
    const rOld = record("b", "k", older);
    const rNew = record("b", "k", newer);
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    const slow = (async function* () { yield older.subarray(0, 1 << 20); await gate; yield older.subarray(1 << 20); })();
    const p1 = f.s.put(knownWrite(rOld, slow));
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(await f.s.put(knownWrite(rNew, pieces(newer))), { applied: true, current: rNew.version });
    release();
    assert.deepEqual(await p1, { applied: false, current: rNew.version }, "re-checked after the body streamed in");
    assert.ok((await readAll((await f.s.get("b", "k"))!.body)).equals(newer));
    await f.s.settled();
    assert.equal((await filesUnder(f.bodies)).length, 1);
    assert.deepEqual(await readdir(path.join(f.bodies, "tmp")), []);
  } finally {
    await f.done();
  }
});

test("durable: a read of a version replaced before its first byte fails with aborted, not data_loss; drop removes only the named version", async () => {
  const losses: ThocError[] = [];
  const f = await fixture({ inlineMax: 0, onDataLoss: (e) => losses.push(e) });
  try {
    const a = bytes(5000, 6);
    const ra = record("b", "k", a);
    await f.s.put(knownWrite(ra, once(a)));
    const stale = await f.s.get("b", "k");
    const b2 = bytes(6000, 7);
    const rb = record("b", "k", b2);
    await f.s.put(knownWrite(rb, once(b2)));
    // The replaced body's file goes away after the put answers: read once it has (before, the old bytes still read fine).
    for (let i = 0; (await filesUnder(f.bodies)).length > 1; i++) {
      assert.ok(i < 500, "the replaced body's file is never removed");
      await new Promise((r) => setTimeout(r, 10));
    }
    await assert.rejects(readAll(stale!.body), (e: ThocError) => e.code === "aborted");
    assert.equal(losses.length, 0);
    assert.equal(await f.s.drop("b", "k", ra.version), false, "drop only removes the version it names");
    assert.equal(await f.s.drop("b", "k", rb.version), true);
    assert.equal(await f.s.head("b", "k"), undefined);
    assert.deepEqual(await collect(f.s.list({ start: 0, end: 0, whole: true })), []);
    assert.deepEqual(await filesUnder(f.bodies), []);
    assert.deepEqual(await f.s.stats(), { records: 0, tombstones: 0, bytes: 0 });
  } finally {
    await f.done();
  }
});

test("durable: a 40 MiB body streams through a file and reads back byte-exact", async () => {
  const f = await fixture();
  try {
    const body = bytes(40 << 20, 8);
    const rec = record("b", "big", body);
    assert.equal((await f.s.put(knownWrite(rec, pieces(body, 256 << 10)))).applied, true);
    const got = await f.s.get("b", "big");
    assert.equal(sha(await readAll(got!.body)), rec.sha256);
    assert.deepEqual(await f.s.head("b", "big"), rec);
  } finally {
    await f.done();
  }
});

test("durable: digestArcs equals digest(arc, 1) for every arc of a ring, and a cached answer never outlives a change", async () => {
  const f = await fixture({ inlineMax: 8 });
  try {
    for (let i = 0; i < 200; i++) {
      const body = Buffer.from(`v${i}`);
      await f.s.put(knownWrite(record("b", `k${i}`, body), once(body)));
    }
    // Ring-like disjoint arcs, one of them wrapping past 0, and an empty one.
    const cuts = Array.from({ length: 24 }, (_, i) => Math.floor(((i + 0.5) * RING_SIZE) / 24)).sort((a, b) => a - b);
    const arcs: PosRange[] = cuts.map((end, i) => ({ start: cuts[(i + cuts.length - 1) % cuts.length]!, end }));
    arcs.push({ start: 7, end: 7 });
    const want = async () => Promise.all(arcs.map(async (a) => (await f.s.digest(a, 1))[0]!));
    assert.deepEqual(await f.s.digestArcs(arcs), await want());
    assert.equal((await f.s.digestArcs(arcs)).reduce((n, d) => n + d.count, 0), 200);
    // Every kind of change shows in the next answer: a put, an overwrite, a delete, a drop.
    const changes: (() => Promise<unknown>)[] = [
      () => f.s.put(knownWrite(record("b", "new", Buffer.from("n")), once(Buffer.from("n")))),
      () => f.s.put(knownWrite(record("b", "k3", Buffer.from("x")), once(Buffer.from("x")))),
      () => f.s.put(knownWrite(tombstoneRecord("b", "k4", hlc.now()), once())),
      async () => { const r = (await f.s.head("b", "k5"))!; return f.s.drop("b", "k5", r.version); },
    ];
    for (const change of changes) {
      const before = await f.s.digestArcs(arcs);
      await change();
      const after = await f.s.digestArcs(arcs);
      assert.notDeepEqual(after, before);
      assert.deepEqual(after, await want());
    }
  } finally {
    await f.done();
  }
});
