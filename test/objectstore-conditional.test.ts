/**
 * Conditional writes are atomic across the nodes of a cluster: three agents in
 * production mode (test/harness.ts: a YAML config, a cluster key of their own,
 * no --dev, mutual TLS between the nodes from the cluster PKI). Each round
 * sends K conditional writes of one key at once, spread over the three nodes;
 * exactly one gets 200, every other one 412 PreconditionFailed (or 409
 * ConditionalRequestConflict), and every node reads back the winner's body:
 *  - If-None-Match: * PUTs of a new key (create-only);
 *  - If-Match PUTs naming the key's current ETag (compare-and-swap);
 *  - create-only CompleteMultipartUpload and CopyObject among the PUTs;
 *  - a node SIGKILLed while it holds a key's lock (its queue of conditional
 *    writes of the key kept full) blocks the key no longer than the lease
 *    (objectstore.conditionalLease, 3 s here); the two others then take the
 *    lock (2 of 3): one If-Match PUT wins, the rest 412, no 409.
 * Before the lock was cluster-wide (each node locked only its own requests),
 * two or more writers of a round got 200 and the last writer's body won.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as s3 from "@aws-sdk/client-s3";
import { startCluster, waitFor, type AgentProcess, type Cluster } from "./harness.js";
import { S3_ENV, getText, s3client, waitRing } from "./objectstore-util.js";

let cluster: Cluster;
let clients: s3.S3Client[];
const ROUNDS = 6;
const K = 6;
const BUCKET = "cas";
/** objectstore.conditionalLease: short, so a killed holder's leases run out within the test. */
const LEASE_MS = 3000;

before(async () => {
  cluster = await startCluster(3, { dev: false, env: { ...S3_ENV, THOC_OBJECTSTORE_CONDITIONAL_LEASE: String(LEASE_MS) } });
  await waitRing(cluster.agents, ["n1", "n2", "n3"]);
  clients = cluster.agents.map((a) => s3client(a));
  await clients[0]!.send(new s3.CreateBucketCommand({ Bucket: BUCKET }));
});
after(async () => cluster?.stop());

type Outcome = { i: number; status: number; code?: string; etag?: string };

async function outcome(i: number, p: Promise<{ ETag?: string }>): Promise<Outcome> {
  try {
    return { i, status: 200, etag: (await p).ETag };
  } catch (err) {
    const e = err as s3.S3ServiceException;
    return { i, status: e.$metadata?.httpStatusCode ?? 0, code: e.name };
  }
}

/** thoc_objectstore_conditional_locks_total{outcome} summed over the agents. */
async function locks(outcome: string, agents: AgentProcess[] = cluster.agents): Promise<number> {
  let sum = 0;
  for (const a of agents) {
    const text = await (await fetch(`${a.httpUrl}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith(`thoc_objectstore_conditional_locks_total{outcome="${outcome}"}`));
    sum += Number(line?.slice(line.lastIndexOf(" ") + 1) ?? NaN);
  }
  return sum;
}

/** Exactly one 200, the rest 412 (or 409); every node reads the winner's body. */
async function checkRound(what: string, key: string, outs: Outcome[], bodyOf: (i: number) => string): Promise<void> {
  const won = outs.filter((o) => o.status === 200);
  const lost = outs.filter((o) => o.status !== 200);
  const summary = outs.map((o) => `#${o.i} via n${(o.i % 3) + 1}: ${o.status}${o.code ? ` ${o.code}` : ""}`).join("; ");
  assert.equal(won.length, 1, `${what}: exactly one writer succeeds (${summary})`);
  for (const o of lost) assert.ok(o.status === 412 || o.status === 409, `${what}: the others are refused with 412 or 409 (${summary})`);
  for (const c of clients) {
    const r = await c.send(new s3.GetObjectCommand({ Bucket: BUCKET, Key: key }));
    assert.equal(await r.Body!.transformToString(), bodyOf(won[0]!.i), `${what}: the stored object is the winner's (${summary})`);
    if (won[0]!.etag) assert.equal(r.ETag, won[0]!.etag);
  }
}

test("If-None-Match: * PUTs of one new key through different nodes at once: one 200, the rest 412, the winner's body everywhere", async () => {
  for (let r = 0; r < ROUNDS; r++) {
    const key = `create-${r}`;
    const outs = await Promise.all(Array.from({ length: K }, (_, i) => outcome(i,
      clients[i % 3]!.send(new s3.PutObjectCommand({ Bucket: BUCKET, Key: key, Body: `writer ${i} of round ${r}`, IfNoneMatch: "*" })))));
    await checkRound(`round ${r}`, key, outs, (i) => `writer ${i} of round ${r}`);
  }
  // Every writer took the cluster-wide lock before its check (the losers too: they then saw the winner's object),
  // and writers through different nodes had to retry for it.
  assert.equal(await locks("taken"), ROUNDS * K);
  assert.ok(await locks("retry") > 0, "writers through other nodes waited for the lease");
  assert.equal(await locks("conflict"), 0);
});

test("If-Match PUTs naming the same ETag through different nodes at once: one replaces the object, the rest 412", async () => {
  for (let r = 0; r < ROUNDS; r++) {
    const key = `swap-${r}`;
    const base = await clients[r % 3]!.send(new s3.PutObjectCommand({ Bucket: BUCKET, Key: key, Body: `base ${r}` }));
    const outs = await Promise.all(Array.from({ length: K }, (_, i) => outcome(i,
      clients[i % 3]!.send(new s3.PutObjectCommand({ Bucket: BUCKET, Key: key, Body: `swap ${i} of round ${r}`, IfMatch: base.ETag })))));
    await checkRound(`round ${r}`, key, outs, (i) => `swap ${i} of round ${r}`);
  }
});

test("create-only CompleteMultipartUpload and CopyObject race PUTs of the same key through other nodes: one wins", async () => {
  await clients[0]!.send(new s3.PutObjectCommand({ Bucket: BUCKET, Key: "copy-source", Body: "from the copy" }));
  for (let r = 0; r < 3; r++) {
    const key = `mixed-${r}`;
    // Writer 0 completes an upload (through n1), writer 1 copies (through n2), the others PUT.
    const up = await clients[0]!.send(new s3.CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
    const part = await clients[0]!.send(new s3.UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId: up.UploadId, PartNumber: 1, Body: "from the upload" }));
    const bodies = ["from the upload", "from the copy", ...Array.from({ length: K - 2 }, (_, i) => `put ${i + 2} of round ${r}`)];
    const outs = await Promise.all([
      outcome(0, clients[0]!.send(new s3.CompleteMultipartUploadCommand({
        Bucket: BUCKET, Key: key, UploadId: up.UploadId, IfNoneMatch: "*", MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] },
      }))),
      outcome(1, clients[1]!.send(new s3.CopyObjectCommand({ Bucket: BUCKET, Key: key, CopySource: `${BUCKET}/copy-source`, IfNoneMatch: "*" })).then((x) => ({ ETag: x.CopyObjectResult?.ETag }))),
      ...bodies.slice(2).map((b, j) => outcome(j + 2, clients[(j + 2) % 3]!.send(new s3.PutObjectCommand({ Bucket: BUCKET, Key: key, Body: b, IfNoneMatch: "*" })))),
    ]);
    await checkRound(`mixed round ${r}`, key, outs, (i) => bodies[i]!);
  }
});

test("a node SIGKILLed while it holds a key's lock blocks it at most a lease TTL; the two others then take the lock (2 of 3)", async (t) => {
  const [a] = cluster.agents as [AgentProcess, AgentProcess, AgentProcess];
  const base = await clients[1]!.send(new s3.PutObjectCommand({ Bucket: BUCKET, Key: "hot", Body: "base" }));
  // Eight writers keep n1's lock queue for "hot" full (create-only PUTs of an existing key: each takes the
  // cluster lock, checks, answers 412), so n1 holds the key's leases on the other nodes when it is killed.
  let stop = false, rounds = 0;
  const loops = Array.from({ length: 8 }, async () => {
    while (!stop) {
      try {
        await clients[0]!.send(new s3.PutObjectCommand({ Bucket: BUCKET, Key: "hot", Body: "never", IfNoneMatch: "*" }));
      } catch (err) {
        if ((err as s3.S3ServiceException).$metadata?.httpStatusCode !== 412) return;
        rounds++;
      }
    }
  });
  await waitFor("n1 busy with the key", async () => rounds >= 20, 20_000, 20);
  await a.kill("SIGKILL");
  const killedAt = Date.now();
  stop = true;
  await Promise.all(loops);
  const two = clients.slice(1);
  const outs = await Promise.all(Array.from({ length: 4 }, (_, i) => outcome(i,
    two[i % 2]!.send(new s3.PutObjectCommand({ Bucket: BUCKET, Key: "hot", Body: `writer ${i}`, IfMatch: base.ETag })))));
  const took = Date.now() - killedAt;
  t.diagnostic(`the key was taken again ${took} ms after the kill (lease ${LEASE_MS} ms); n1 had answered ${rounds} conditional writes of it`);
  const won = outs.filter((o) => o.status === 200);
  assert.equal(won.length, 1, JSON.stringify(outs));
  for (const o of outs) if (o.status !== 200) assert.equal(o.status, 412, JSON.stringify(outs));
  // The dead holder's leases on n2 and n3 ran out within LEASE_MS of its last grant (slack: a loaded machine, quorum calls to a dead node).
  assert.ok(took < LEASE_MS + 5000, `the key was free within the lease TTL after the kill (${took} ms)`);
  for (const x of two) assert.equal(await getText(x, BUCKET, "hot"), `writer ${won[0]!.i}`);
  assert.equal(await locks("conflict", cluster.agents.slice(1)), 0, "no writer gave up on the lock");
});
