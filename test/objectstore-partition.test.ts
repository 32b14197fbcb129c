/**
 * A real 2 | 3 network partition of five agents (network namespaces, iptables
 * in a router namespace; test/netns.ts) under concurrent overwrites and
 * deletes through agents on both sides. Each key can take writes on at most
 * one side (the one holding W of its preferred nodes); the other answers 503.
 * No read may be torn, corrupt or older than a write acknowledged before it
 * started; after the heal, every key reads through every agent as its last
 * acknowledged write (or a later unacknowledged one: docs/objectstore.md).
 * Needs root; skipped with a message otherwise.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as s3 from "@aws-sdk/client-s3";
import { sleep, waitFor } from "./harness.js";
import { NetnsLab, netnsUnavailable } from "./netns.js";
import { S3_ENV, s3client } from "./objectstore-util.js";
import { History, finalReads, readKey, serverFailures, ringView, startWorkload, waitUp, type Target } from "./objectstore-workload.js";

const skip = netnsUnavailable();
let lab: NetnsLab | undefined;
const names = ["n1", "n2", "n3", "n4", "n5"];
const minority = [1, 2];
const majority = [3, 4, 5];
const PARTITION_MS = Number(process.env.THOC_PARTITION_MS ?? 35_000);
const HEALED_MS = Number(process.env.THOC_HEALED_MS ?? 25_000);

before(async () => {
  if (skip) return;
  lab = await NetnsLab.create(5, { env: S3_ENV, seeds: [1, 3] });
  await Promise.all(lab.agents.map((a) => a.start(60_000)));
  await waitUp(lab.agents, names, 60_000);
});
after(async () => {
  if (lab) await lab.close();
});

test("2 | 3 partition under concurrent writes through both sides: nothing acknowledged is lost, nothing torn, every agent agrees after the heal", { skip, timeout: 300_000 }, async () => {
  const agents = lab!.agents;
  const bucket = "split";
  await s3client(agents[0]!).send(new s3.CreateBucketCommand({ Bucket: bucket }));
  const keys = Array.from({ length: 16 }, (_, i) => `p${i}`);
  const h = new History(keys);
  const clients = agents.map((a) => s3client(a));
  const targets = (): Target[] => agents.map((a, i) => ({ name: a.name, client: clients[i]! }));
  const sideOf = (name: string) => (minority.includes(Number(name.slice(1))) ? "minority" : "majority");

  const t0 = Date.now();
  const load = startWorkload({ bucket, history: h, writers: 4, targets, deleteRatio: 0.1, readRatio: 0.3 });
  let split = 0, splitSeen = 0, healed = 0, merged = 0;
  try {
    await sleep(4000);
    lab!.partition([minority, majority]);
    split = Date.now();
    const byName = (n: number[]) => n.map((i) => `n${i}`).sort();
    await Promise.all(agents.map((a, i) => waitFor(`${a.name} sees the other side down`, async () => {
      const v = await ringView(a);
      const mine = minority.includes(i + 1) ? minority : majority;
      return JSON.stringify(v.up) === JSON.stringify(byName(mine));
    }, 60_000, 250)));
    splitSeen = Date.now();
    await sleep(Math.max(0, split + PARTITION_MS - Date.now()));
    lab!.heal();
    healed = Date.now();
    await waitUp(agents, names, 60_000);
    merged = Date.now();
    await sleep(Math.max(0, healed + HEALED_MS - Date.now()));
  } finally {
    await load.stop();
  }
  const runMs = Date.now() - t0;

  // Settle: no hints left anywhere and every agent reads every key alike.
  const s0 = Date.now();
  let lastDiff = "";
  let hintsMs = -1;
  await waitFor("hints delivered and every agent reads every key alike", async () => {
    for (const a of agents) if ((await ringView(a)).pendingHints !== 0) { lastDiff = `${a.name} has pending hints`; return false; }
    if (hintsMs < 0) hintsMs = Date.now() - s0;
    for (const k of keys) {
      const got = await Promise.all(clients.map((c) => readKey(c, bucket, k)));
      if (new Set(got).size !== 1) { lastDiff = `${k}: ${got.join(" ")}`; return false; }
    }
    return true;
  }, 60_000, 500).catch((e: Error) => { throw new Error(`${e.message} (${lastDiff})`); });
  const settleMs = Date.now() - s0;

  const { problems, final } = await finalReads(h, bucket, keys, targets());

  // What each side could do while split (ops wholly inside the split as the agents saw it).
  const during = [...h.byId.values()].filter((o) => o.start >= splitSeen && o.end! <= healed);
  const side = (s: string) => during.filter((o) => sideOf(o.via) === s);
  const fig = (s: string) => `${side(s).filter((o) => o.acked).length} acked / ${side(s).filter((o) => o.acked === false && /^503/.test(o.err ?? "")).length} 503 / ${side(s).filter((o) => o.acked === false && !/^503/.test(o.err ?? "")).length} other`;
  const keysWritten = (s: string) => new Set(side(s).filter((o) => o.acked).map((o) => o.key));
  const f = h.figures();
  const stale = h.staleReads();
  console.log(`  ${(runMs / 1000).toFixed(0)} s of writes (split ${((healed - split) / 1000).toFixed(0)} s, seen by every agent after ${((splitSeen - split) / 1000).toFixed(1)} s; re-merged ${((merged - healed) / 1000).toFixed(1)} s after the heal)`);
  console.log(`  4 writers on ${keys.length} keys: ${f.puts} PUTs + ${f.deletes} DELETEs, ${f.acked} acknowledged, ${f.failed} failed (${f.unbounded} without an answer); ${f.reads} reads verified, ${f.torn} torn/corrupt, ${stale.length} stale`);
  console.log(`  while split, writes through the minority {n1,n2}: ${fig("minority")} (keys ${[...keysWritten("minority")].sort().join(",")}); majority {n3,n4,n5}: ${fig("majority")} (keys ${[...keysWritten("majority")].sort().join(",")})`);
  console.log(`  request errors: ${JSON.stringify(load.errors)}`);
  for (const [k, m] of load.samples) if (!/reduce your request rate/.test(m)) console.log(`    e.g. ${k}: ${m}`);
  for (const m of serverFailures(agents)) console.log(`    agents' 5xx: ${m}`);
  console.log(`  settled ${settleMs} ms after the writers stopped (hints all delivered after ${hintsMs} ms); final: ${[...final.values()].filter((v) => v === "404").length} deleted, ${[...final.values()].filter((v) => v !== "404").length} present`);

  assert.deepEqual(h.torn, [], "successful reads that were torn or corrupt");
  assert.deepEqual(stale, [], "reads older than a write acknowledged before they started");
  assert.deepEqual(problems, [], "final reads");
  assert.ok(runMs >= 60_000, `writes ran ${runMs} ms`);
  // The split was real: the minority refused keys whose preferred nodes are mostly across, the majority took writes.
  assert.ok(side("minority").some((o) => /^503/.test(o.err ?? "")), "the minority side answered 503 for keys it cannot reach W of");
  assert.ok(keysWritten("majority").size > 0, "the majority side took writes");
  // No key took acknowledged writes on both sides: W of its preferred nodes are on one side only.
  const both = [...keysWritten("minority")].filter((k) => keysWritten("majority").has(k));
  assert.deepEqual(both, [], "keys acknowledged on both sides of the partition");
});
