/**
 * Multipart objects on three real agents in production mode (config files,
 * cluster PKI: mutual TLS between agents, a cluster key of their own): parts
 * uploaded through different nodes, completed through one, read back whole,
 * by ranges across part boundaries and by part number through every node
 * byte-exact; the parts stay while the object lives and are collected, each
 * by one node, once it is overwritten (objectstore.partSweepInterval and
 * partGrace shortened so the sweep shows within seconds).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import * as s3 from "@aws-sdk/client-s3";
import { sleep, startCluster, waitFor, type AgentProcess, type Cluster } from "./harness.js";
import { S3_ENV, metric, s3client, waitRing } from "./objectstore-util.js";

let cluster: Cluster;
const names = ["n1", "n2", "n3"];
const MiB = 1 << 20;
const B = "mpu";
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

before(async () => {
  cluster = await startCluster(3, {
    dev: false,
    env: { ...S3_ENV, THOC_OBJECTSTORE_PART_SWEEP_INTERVAL: "300", THOC_OBJECTSTORE_PART_GRACE: "600" },
  });
  await waitRing(cluster.agents, names);
});
after(async () => cluster?.stop());

/** Parts the sweepers of all agents reported deleting for an upload. */
function swept(uploadId: string): number {
  let n = 0;
  for (const a of cluster.agents) {
    for (const l of a.logs()) if (l.msg === "object store: part sweep deleted parts no object uses" && l.uploadId === uploadId) n += Number(l.deleted);
  }
  return n;
}

test("complete through one node, read whole and across part boundaries through every node, parts collected after an overwrite", async () => {
  const agents = cluster.agents as AgentProcess[];
  const c1 = s3client(agents[0]!);
  await waitFor("the bucket is created", async () => { await c1.send(new s3.CreateBucketCommand({ Bucket: B })); return true; }, 30_000, 500);
  const data = [randomBytes(5 * MiB), randomBytes(5 * MiB + 333), randomBytes(4321)];
  const whole = Buffer.concat(data);
  const { UploadId } = await c1.send(new s3.CreateMultipartUploadCommand({ Bucket: B, Key: "big" }));
  const parts: s3.CompletedPart[] = [];
  for (const [i, d] of data.entries()) {
    const r = await s3client(agents[i]!).send(new s3.UploadPartCommand({ Bucket: B, Key: "big", UploadId, PartNumber: i + 1, Body: d }));
    parts.push({ PartNumber: i + 1, ETag: r.ETag });
  }
  const done = await c1.send(new s3.CompleteMultipartUploadCommand({ Bucket: B, Key: "big", UploadId, MultipartUpload: { Parts: parts } }));
  assert.match(done.ETag ?? "", /-3"$/);

  const b1 = data[0]!.length, b2 = b1 + data[1]!.length;
  const ranges: [number, number][] = [[b1 - 100, b1 + 99], [b1 - 1, b2], [0, whole.length - 1], [b2 - 7, whole.length - 1], [12345, b2 + 10]];
  for (const a of agents) {
    const c = s3client(a);
    const h = await c.send(new s3.HeadObjectCommand({ Bucket: B, Key: "big" }));
    assert.equal(h.ContentLength, whole.length, `HEAD through ${a.name}`);
    assert.equal(h.ETag, done.ETag);
    const l = await c.send(new s3.ListObjectsV2Command({ Bucket: B }));
    assert.deepEqual(l.Contents?.map((o) => [o.Key, o.Size]), [["big", whole.length]], `listing through ${a.name}`);
    const g = await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "big" }));
    assert.equal(sha(await g.Body!.transformToByteArray()), sha(whole), `whole object through ${a.name}`);
    for (const [s, e] of ranges) {
      const r = await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "big", Range: `bytes=${s}-${e}` }));
      assert.equal(r.ContentRange, `bytes ${s}-${e}/${whole.length}`);
      assert.equal(sha(await r.Body!.transformToByteArray()), sha(whole.subarray(s, e + 1)), `bytes ${s}-${e} through ${a.name}`);
    }
    const p = await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "big", PartNumber: 2 }));
    assert.equal(p.PartsCount, 3);
    assert.equal(sha(await p.Body!.transformToByteArray()), sha(data[1]!), `part 2 through ${a.name}`);
  }

  // Many sweeps and grace periods later, a live object's parts are still used and still there.
  await sleep(2500);
  assert.equal(swept(UploadId!), 0, "no part of a live object is collected");
  const g = await s3client(agents[2]!).send(new s3.GetObjectCommand({ Bucket: B, Key: "big" }));
  assert.equal(sha(await g.Body!.transformToByteArray()), sha(whole));

  // Overwritten through another node: its three parts go, each deleted by exactly one node.
  await s3client(agents[1]!).send(new s3.PutObjectCommand({ Bucket: B, Key: "big", Body: "small now" }));
  await waitFor("the overwritten object's parts are collected", async () => swept(UploadId!) >= 3, 20_000, 250);
  await sleep(1500);
  assert.equal(swept(UploadId!), 3, "each part deleted once, by one node");
  let total = 0;
  for (const a of agents) total += await metric(a, "thoc_objectstore_parts_swept_total");
  assert.equal(total, 3, "thoc_objectstore_parts_swept_total, summed over the nodes");
  for (const a of agents) {
    const r = await s3client(a).send(new s3.GetObjectCommand({ Bucket: B, Key: "big" }));
    assert.equal(await r.Body!.transformToString(), "small now");
  }
});
