/**
 * The replicated table's merge rules (last writer wins by HLC, a deterministic
 * tie-break, tombstones ordered like any write), durability through LevelDB,
 * and ClusterTable's digest-first exchange converging two nodes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { LocalStore } from "../store/index.js";
import { ClusterTable, HlcClock, LevelTableBackend, MemoryTableBackend, ReplicatedTable, encodeHlc, type TableEntry, type TablePeer } from "./index.js";

const v = (physical: number, logical = 0, node = "n1") => encodeHlc({ physical, logical, node });
const put = (key: string, version: string, value: string): TableEntry => ({ key, version, deleted: false, value });
const del = (key: string, version: string): TableEntry => ({ key, version, deleted: true, value: "" });
const open = (name = "t") => ReplicatedTable.open(name, new MemoryTableBackend());

function permutations<T>(xs: T[]): T[][] {
  if (xs.length <= 1) return [xs];
  return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((rest) => [x, ...rest]));
}

test("last writer wins by HLC whatever the delivery order, one by one or in one batch", async () => {
  // Physical time first, then the logical counter, then the node id: v(1000, 2) is newer than v(1000, 1, "n9").
  const writes = [put("a", v(1000, 0, "n3"), "\"first\""), put("a", v(1000, 1, "n9"), "\"second\""), put("a", v(1000, 2, "n1"), "\"third\""), put("a", v(999, 7, "n2"), "\"older\"")];
  const digests = new Set<string>();
  for (const order of permutations(writes)) {
    const t = await open();
    for (const e of order) await t.merge([e]);
    assert.equal(t.get("a"), "\"third\"", order.map((e) => e.value).join(" "));
    assert.equal(t.entry("a")!.version, v(1000, 2, "n1"));
    digests.add(t.digest());
    const batch = await open();
    await batch.merge(order);
    assert.equal(batch.get("a"), "\"third\"", `batch ${order.map((e) => e.value).join(" ")}`);
    digests.add(batch.digest());
  }
  assert.equal(digests.size, 1, "every order ends in the same state");
});

test("an older write arriving late changes nothing and is not reported as a change", async () => {
  const t = await open();
  const seen: TableEntry[][] = [];
  t.onChange((c) => seen.push(c));
  assert.equal((await t.merge([put("k", v(2000), "\"new\"")])).length, 1);
  const before = t.digest();
  assert.deepEqual(await t.merge([put("k", v(1999), "\"old\""), del("k", v(1500))]), []);
  assert.equal(t.get("k"), "\"new\"");
  assert.equal(t.digest(), before);
  assert.equal(seen.length, 1);
});

test("equal versions tie-break on content, the same on every node; a tombstone beats a put at the same version", async () => {
  const same = v(5000, 3, "n2");
  const x = put("k", same, "\"x\""), y = put("k", same, "\"y\"");
  const [a, b] = [await open(), await open()];
  await a.merge([x]); await a.merge([y]);
  await b.merge([y]); await b.merge([x]);
  assert.equal(a.get("k"), "\"y\"");
  assert.equal(b.get("k"), "\"y\"");
  assert.equal(a.digest(), b.digest());
  for (const order of permutations([x, y, del("k", same)])) {
    const t = await open();
    for (const e of order) await t.merge([e]);
    assert.equal(t.entry("k")!.deleted, true, order.map((e) => e.value || "tombstone").join(" "));
  }
});

test("deletes: a tombstone wins over older puts and loses to newer ones, in either order", async () => {
  for (const order of permutations([put("k", v(100), "\"v1\""), del("k", v(200)), put("other", v(150), "\"o\"")])) {
    const t = await open();
    for (const e of order) await t.merge([e]);
    assert.equal(t.get("k"), undefined);
    assert.deepEqual(t.entry("k"), del("k", v(200)), "the tombstone is kept, not dropped");
    assert.deepEqual(t.live(), [{ key: "other", value: "\"o\"" }]);
    assert.deepEqual(t.all().map((e) => e.key), ["k", "other"]);
  }
  for (const order of permutations([del("k", v(200)), put("k", v(300), "\"v2\"")])) {
    const t = await open();
    for (const e of order) await t.merge([e]);
    assert.equal(t.get("k"), "\"v2\"", "a newer put re-creates the key");
    assert.equal(t.entry("k")!.deleted, false);
  }
});

test("invalid entries are refused whole: nothing of the batch is applied", async () => {
  const t = await open();
  // merge() validates before it returns its promise, so the refusal is a synchronous throw.
  await assert.rejects(async () => t.merge([put("ok", v(1), "1"), { key: "bad", version: v(2), deleted: true, value: "x" }]), (e: { code: string }) => e.code === "invalid_argument");
  await assert.rejects(async () => t.merge([put("ok", v(1), "1"), put("bad", "not-an-hlc", "1")]));
  assert.deepEqual(t.all(), []);
});

test("LevelDB backend: entries and tombstones survive a reopen, and still order later merges", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-table-"));
  try {
    let store = await LocalStore.open(dir);
    let t = await ReplicatedTable.open("buckets", new LevelTableBackend(store, "buckets"));
    await t.merge([put("a", v(100), "\"a1\""), put("b", v(100), "\"b1\"")]);
    await t.merge([del("a", v(200)), put("b", v(300), "\"b2\""), put("b", v(250), "\"b-stale\"")]);
    const digest = t.digest();
    await store.close();

    store = await LocalStore.open(dir);
    t = await ReplicatedTable.open("buckets", new LevelTableBackend(store, "buckets"));
    assert.equal(t.digest(), digest);
    assert.deepEqual(t.all(), [del("a", v(200)), put("b", v(300), "\"b2\"")]);
    // A put from a node that was away, older than the stored tombstone: the delete holds.
    assert.deepEqual(await t.merge([put("a", v(150), "\"resurrected\"")]), []);
    assert.equal(t.get("a"), undefined);
    // Another table in the same store is a separate key space.
    const other = await ReplicatedTable.open("s3keys", new LevelTableBackend(store, "s3keys"));
    assert.deepEqual(other.all(), []);
    await store.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

/** Two nodes wired to each other the way the SyncTable handler (objectstore/replica/service.ts) answers. */
function pair(a: ReplicatedTable, b: ReplicatedTable, up = { a: true, b: true }) {
  const handler = (t: ReplicatedTable, id: string): TablePeer => ({
    nodeId: id,
    async syncTable(_name, digest, entries) {
      if (!up[id as "a" | "b"]) throw new Error(`${id} is down`);
      if (entries.length) await t.merge(entries);
      const d = t.digest();
      return { digest: d, entries: d === digest ? [] : t.all() };
    },
  });
  const peers = { a: handler(a, "a"), b: handler(b, "b") };
  const ct = (t: ReplicatedTable, self: "a" | "b") => new ClusterTable(t, {
    hlc: new HlcClock(self), ringNodes: () => ["a", "b"], self, isUp: (id) => up[id as "a" | "b"], peer: (id) => peers[id as "a" | "b"],
  });
  return { ca: ct(a, "a"), cb: ct(b, "b"), up };
}

test("ClusterTable: one digest-first exchange leaves both nodes with the same entries and digest", async () => {
  const [a, b] = [await open("buckets"), await open("buckets")];
  await a.merge([put("x", v(100, 0, "a"), "\"ax\""), put("y", v(300, 0, "a"), "\"ay\""), del("z", v(400, 0, "a"))]);
  await b.merge([put("x", v(200, 0, "b"), "\"bx\""), put("y", v(250, 0, "b"), "\"by\""), put("z", v(350, 0, "b"), "\"bz\""), put("w", v(10, 0, "b"), "\"bw\"")]);
  assert.notEqual(a.digest(), b.digest());
  const { ca } = pair(a, b);
  await ca.syncWith("b");
  assert.equal(a.digest(), b.digest());
  assert.deepEqual(a.all(), b.all());
  assert.deepEqual(a.live(), [{ key: "w", value: "\"bw\"" }, { key: "x", value: "\"bx\"" }, { key: "y", value: "\"ay\"" }]);
  assert.equal(a.entry("z")!.deleted, true);
});

test("ClusterTable: a delete made while a node was down reaches it on its return and is not undone by its stale copy", async () => {
  const [a, b] = [await open("s3keys"), await open("s3keys")];
  const { ca, cb, up } = pair(a, b);
  await ca.put("AKIA1", "\"secret\"");
  assert.equal(b.get("AKIA1"), "\"secret\"", "the put reached b");
  up.b = false;
  // With one of two nodes down the delete has no majority (503), but it is applied where it was made.
  await assert.rejects(ca.put("AKIA1", null), (e: { code: string }) => e.code === "unavailable");
  assert.equal(a.get("AKIA1"), undefined);
  assert.equal(b.get("AKIA1"), "\"secret\"");
  up.b = true;
  // b's anti-entropy pushes its older put; the tombstone still wins, on both.
  await cb.syncWith("a");
  assert.equal(a.get("AKIA1"), undefined);
  assert.equal(b.get("AKIA1"), undefined);
  assert.equal(await cb.lookup("AKIA1"), undefined);
  assert.equal(a.digest(), b.digest());
});
