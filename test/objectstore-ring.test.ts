/**
 * Ring changes with real agents and live traffic: a 4th node joins a ring of
 * three and a node is removed (`thoc-node node remove`) while a client keeps
 * writing and reading through every node — not one request may fail — and
 * data moves to the new owners (misplaced replicas drain to zero). Then the
 * ring grows to five nodes and every object is read, and every listing is
 * the same, through each of them.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import * as s3 from "@aws-sdk/client-s3";
import { sleep, startCluster, waitFor, type AgentProcess, type Cluster } from "./harness.js";
import { S3_ENV, getText, listAll, ringOf, s3client, waitRing } from "./objectstore-util.js";

let cluster: Cluster;

before(async () => {
  cluster = await startCluster(3, { env: S3_ENV });
  await waitRing(cluster.agents, ["n1", "n2", "n3"]);
});
after(async () => cluster?.stop());

/** Reads and overwrites through the given agents until stopped; every failure is recorded. */
function traffic(agents: () => AgentProcess[], want: Map<string, string>) {
  const failures: string[] = [];
  let ops = 0;
  let stop = false;
  const run = (async () => {
    let i = 0;
    while (!stop) {
      const live = agents();
      const via = live[i % live.length]!;
      const k = `k${i % 80}`;
      try {
        if (i % 3 === 0) {
          const v = `v${i}-${randomBytes(6).toString("hex")}`;
          await s3client(via).send(new s3.PutObjectCommand({ Bucket: "moving", Key: k, Body: v }));
          want.set(k, v);
        } else if (want.has(k)) {
          const got = await getText(s3client(via), "moving", k);
          if (got !== want.get(k)) failures.push(`GET ${k} via ${via.name}: ${got} != ${want.get(k)}`);
        }
      } catch (err) {
        failures.push(`${i % 3 === 0 ? "PUT" : "GET"} ${k} via ${via.name}: ${(err as Error).name}: ${(err as Error).message}`);
      }
      ops++;
      i++;
    }
  })();
  return { failures, ops: () => ops, stop: async () => { stop = true; await run; } };
}

async function drained(agents: AgentProcess[], timeoutMs = 60_000): Promise<number> {
  const t0 = Date.now();
  for (const a of agents) {
    await waitFor(`${a.name} has no misplaced replicas`, async () => (await ringOf(a)).misplacedReplicas === 0, timeoutMs, 500);
  }
  return Date.now() - t0;
}

test("a 4th node joins and a node is removed under live traffic: no failed request, data moves, balance reported", async () => {
  const [n1, n2, n3] = cluster.agents as [AgentProcess, AgentProcess, AgentProcess];
  await s3client(n1).send(new s3.CreateBucketCommand({ Bucket: "moving" }));
  const want = new Map<string, string>();
  for (let i = 0; i < 80; i++) {
    const v = `init-${i}`;
    await s3client(cluster.agents[i % 3]!).send(new s3.PutObjectCommand({ Bucket: "moving", Key: `k${i}`, Body: v }));
    want.set(`k${i}`, v);
  }
  let serving: AgentProcess[] = [n1, n2, n3];
  const t = traffic(() => serving, want);
  try {
    const n4 = cluster.add();
    await n4.start();
    await waitRing(cluster.agents, ["n1", "n2", "n3", "n4"]);
    serving = [n1, n2, n3, n4];
    const took = await drained(cluster.agents);
    const r4 = await ringOf(n4);
    console.log(`  4 nodes: balance ${r4.balance.min.toFixed(3)}–${r4.balance.max.toFixed(3)} of fair share; shares ${r4.nodes.map((n) => `${n.name} ${(n.share * 100).toFixed(1)}%`).join(", ")}; rebalanced ${took} ms after the ring settled; ${t.ops()} requests so far`);
    assert.ok(r4.nodes.every((n) => n.share > 0.1), "every node owns part of the key space");

    const rm = await n1.cli(["node", "remove", "n2"]);
    assert.equal(rm.code, 0, rm.stderr);
    assert.match(rm.stdout, /removed n2/);
    serving = [n1, n3, n4];
    await waitRing([n1, n3, n4], ["n1", "n3", "n4"], 30_000, ["n2"]);
    const took2 = await drained([n1, n2, n3, n4]);
    console.log(`  n2 removed: its replicas moved away ${took2} ms after the ring settled; ${t.ops()} requests so far`);
    const again = await n1.cli(["node", "remove", "n2", "--json"]);
    assert.equal(JSON.parse(again.stdout).removed, false, "removing twice is a no-op");
    const bad = await n1.cli(["node", "remove", "no-such-node"]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /no node "no-such-node" in the ring/);
  } finally {
    await t.stop();
  }
  assert.deepEqual(t.failures, [], `${t.failures.length} of ${t.ops()} requests failed during the ring changes`);
  console.log(`  ${t.ops()} requests during join and removal, none failed`);

  // The removed node can go for good: everything is still there, through every remaining node.
  await n2.kill("SIGKILL");
  for (const a of [n1, n3, cluster.agents[3]!]) {
    for (const [k, v] of want) assert.equal(await getText(s3client(a), "moving", k), v, `${k} via ${a.name}`);
  }
});

test("five nodes: an object written through one is read through every other; listings agree", async () => {
  // n1, n3, n4 are in the ring (n2 was removed); two more make five.
  for (let i = 0; i < 2; i++) {
    const a = cluster.add();
    await a.start();
  }
  const live = cluster.agents.filter((a) => a.name !== "n2");
  assert.equal(live.length, 5);
  await waitRing(live, live.map((a) => a.name), 40_000, ["n2"]);
  await sleep(500);
  const c0 = s3client(live[0]!);
  await c0.send(new s3.CreateBucketCommand({ Bucket: "five" }));
  const keys: string[] = [];
  for (let i = 0; i < 25; i++) {
    const k = `dir${i % 4}/obj-${String(i).padStart(2, "0")}`;
    keys.push(k);
    await s3client(live[i % 5]!).send(new s3.PutObjectCommand({ Bucket: "five", Key: k, Body: `body of ${k}` }));
  }
  keys.sort();
  const listings = new Set<string>();
  for (const a of live) {
    const cl = s3client(a);
    for (const k of keys) assert.equal(await getText(cl, "five", k), `body of ${k}`, `${k} via ${a.name}`);
    const all = await listAll(cl, "five", { pageSize: 7 });
    assert.deepEqual(all, keys, `sorted listing via ${a.name}`);
    listings.add(JSON.stringify([all, await listAll(cl, "five", { delimiter: "/" }), await listAll(cl, "five", { prefix: "dir2/" })]));
  }
  assert.equal(listings.size, 1, "the same listings through all five nodes");
  const ring = await ringOf(live[4]!);
  console.log(`  5 nodes: balance ${ring.balance.min.toFixed(3)}–${ring.balance.max.toFixed(3)} of fair share`);
});
