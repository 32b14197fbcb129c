/**
 * Repair after a node is lost for good, on four agents in production mode
 * (test/harness.ts: config files, no --dev) with the production anti-entropy
 * interval (10 min), so only the ring change can start the repair within the
 * test: n4 is SIGKILLed and `node remove`d through n1; the three left are
 * back to three copies of every object within seconds, with exactly as many
 * copies made as n4's loss left missing (the repair-copies metric on each
 * node, no duplicate transfer), and every object reads back byte-exact
 * through every node.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import * as s3 from "@aws-sdk/client-s3";
import { startCluster, waitFor, type AgentProcess, type Cluster } from "./harness.js";
import { S3_ENV, metric, s3client, waitRing } from "./objectstore-util.js";

let cluster: Cluster;
const names = ["n1", "n2", "n3", "n4"];
const COUNT = 40;
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const each = (as: AgentProcess[], name: string) => Promise.all(as.map((a) => metric(a, name)));

before(async () => {
  cluster = await startCluster(4, { dev: false, env: { ...S3_ENV, THOC_OBJECTSTORE_ANTI_ENTROPY_INTERVAL: "600s" } });
  await waitRing(cluster.agents, names);
});
after(async () => cluster?.stop());

test("node remove: the three nodes left re-replicate at once, one copy per missing replica, byte-exact", async () => {
  const [n1, , , n4] = cluster.agents as [AgentProcess, AgentProcess, AgentProcess, AgentProcess];
  const rest = cluster.agents.slice(0, 3);
  await s3client(n1).send(new s3.CreateBucketCommand({ Bucket: "repair" }));
  const sums: string[] = [];
  for (let i = 0; i < COUNT; i++) {
    // Small bodies live inline in LevelDB, larger ones in files: both kinds are repaired.
    const body = randomBytes(i % 2 ? 150_000 : 1000);
    sums[i] = sha(body);
    await s3client(cluster.agents[i % 4]!).send(new s3.PutObjectCommand({ Bucket: "repair", Key: `o${i}`, Body: body }));
  }
  await waitFor("3 replicas of every object", async () => sum(await each(cluster.agents, "thoc_objectstore_replicas")) === 3 * COUNT, 30_000, 250);
  const held = await each(rest, "thoc_objectstore_replicas");
  const missing = 3 * COUNT - sum(held);
  assert.equal(missing, await metric(n4, "thoc_objectstore_replicas"));
  assert.ok(missing > 10, `n4 held ${missing}`);
  const copies0 = sum(await each(rest, "thoc_objectstore_anti_entropy_repairs_total"));

  await n4.kill("SIGKILL");
  const t0 = Date.now();
  const r = await n1.cli(["node", "remove", "n4"]);
  assert.equal(r.code, 0, r.stderr);
  await waitFor("every object on each of the 3 nodes left", async () => (await each(rest, "thoc_objectstore_replicas")).every((n) => n === COUNT), 60_000, 250);
  const took = Date.now() - t0;
  assert.ok(took < 60_000, `re-replicated in ${took} ms, long before the 10 min anti-entropy tick`);
  assert.equal(sum(await each(rest, "thoc_objectstore_anti_entropy_repairs_total")) - copies0, missing, "as many copies as were missing");
  assert.equal(sum(await each(rest, "thoc_objectstore_repair_duplicates_total")), 0, "no copy transferred for nothing");
  for (const a of rest) {
    for (let i = 0; i < COUNT; i++) {
      const got = await s3client(a).send(new s3.GetObjectCommand({ Bucket: "repair", Key: `o${i}` }));
      assert.equal(sha(await got.Body!.transformToByteArray()), sums[i], `o${i} through ${a.name}`);
    }
  }
});
