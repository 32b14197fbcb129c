/**
 * gatherSources: the one-call-per-node listing behind an upload's part list
 * (ReplicationNode.gather). Sources here are in-memory lists with controlled
 * timing: what is tested is which nodes are asked and when, and that the
 * merged answer keeps the newest version of every key.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { isBlobError } from "../blob/index.js";
import { gatherSources, type GatherSource } from "./listing.js";
import type { ReplicaRecord } from "./replica-store.js";

const rec = (key: string, version: string, tombstone = false): ReplicaRecord => ({ bucket: "b", key, version, tombstone, size: 0, sha256: "", meta: "" });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A source answering `recs` after `ms` (or failing), counting how often it was asked. */
function source(node: string, recs: ReplicaRecord[], o: { ms?: number; fail?: boolean } = {}): GatherSource & { asked: number; cancelled: boolean } {
  const s = {
    node, asked: 0, cancelled: false,
    list: async (signal: AbortSignal) => {
      s.asked++;
      signal.addEventListener("abort", () => { s.cancelled = true; }, { once: true });
      await sleep(o.ms ?? 0);
      if (o.fail) throw new Error(`${node} is down`);
      return recs;
    },
  };
  return s;
}

test("asks only as many nodes as it needs, and keeps the newest version of every key in key order", async () => {
  const a = source("a", [rec("p/1", "v2"), rec("p/3", "v1", true)]);
  const b = source("b", [rec("p/1", "v1"), rec("p/2", "v5")]);
  const c = source("c", [rec("p/1", "v9")]);
  const got = await gatherSources("list b", [a, b, c], 2, 2);
  assert.deepEqual(got.map((r) => [r.key, r.version, r.tombstone]), [["p/1", "v2", false], ["p/2", "v5", false], ["p/3", "v1", true]]);
  assert.deepEqual([a.asked, b.asked, c.asked], [1, 1, 0], "the third node is not asked when two answer");
});

test("a node that fails is replaced by a spare; too many failures are unavailable", async () => {
  const a = source("a", [rec("p/1", "v1")]);
  const b = source("b", [], { fail: true });
  const c = source("c", [rec("p/1", "v3")]);
  const got = await gatherSources("list b", [a, b, c], 2, 2);
  assert.deepEqual(got.map((r) => r.version), ["v3"], "the spare's newer version is in the answer");
  assert.equal(c.asked, 1);

  const bad = [source("a", [rec("p/1", "v1")]), source("b", [], { fail: true }), source("c", [], { fail: true })];
  await assert.rejects(gatherSources("list b", bad, 2, 2), (err: unknown) => isBlobError(err, "Unavailable"));
  await assert.rejects(gatherSources("list b", [source("a", [])], 2, 2, { down: ["b", "c"] }), (err: unknown) => isBlobError(err, "Unavailable"),
    "fewer live nodes than needed: refused before asking");
});

test("a slow node: the spares are asked after hedgeMs, and the slow answer is not waited for", async () => {
  const a = source("a", [rec("p/1", "v1")]);
  const slow = source("b", [rec("p/1", "v0")], { ms: 2000 });
  const c = source("c", [rec("p/2", "v1")]);
  const t0 = Date.now();
  const got = await gatherSources("list b", [a, slow, c], 2, 2, { hedgeMs: 30 });
  assert.ok(Date.now() - t0 < 1000, `answered in ${Date.now() - t0} ms`);
  assert.deepEqual(got.map((r) => r.key), ["p/1", "p/2"]);
  assert.equal(c.asked, 1, "the spare was asked");
  assert.equal(slow.cancelled, true, "the slow call is cancelled once enough answered");
});
