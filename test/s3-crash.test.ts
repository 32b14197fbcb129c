/**
 * Crash safety of the S3 object store with a real agent: SIGKILL it while a
 * large PUT is streaming in, restart it, and the key holds exactly what it
 * held before (the previous object byte-exact, or nothing) with no temp file
 * left behind.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client, CreateBucketCommand } from "@aws-sdk/client-s3";
import { startCluster, waitFor, type Cluster } from "./harness.js";

const ACCESS = "THOCCRASHTEST0000001";
const SECRET = "crash-test-secret-0123456789abcdefghijkl";
const BIG = 300 * 1024 * 1024;

let cluster: Cluster;
let client: S3Client;

before(async () => {
  cluster = await startCluster(1, { env: { THOC_S3_ACCESS_KEY: ACCESS, THOC_S3_SECRET_KEY: SECRET } });
  client = new S3Client({
    endpoint: cluster.agents[0]!.s3Url, region: "us-east-1", forcePathStyle: true, maxAttempts: 1,
    credentials: { accessKeyId: ACCESS, secretAccessKey: SECRET },
  });
});
after(async () => {
  client?.destroy();
  await cluster?.stop();
});

async function bodyHash(key: string): Promise<string> {
  const r = await client.send(new GetObjectCommand({ Bucket: "crash", Key: key }));
  const h = createHash("sha256");
  for await (const c of r.Body as Readable) h.update(c as Buffer);
  return h.digest("hex");
}

/** A 300 MiB body that trickles in (so the kill lands mid-stream) and reports progress. */
function slowBody(progress: { sent: number }): Readable {
  const chunk = randomBytes(1 << 20);
  return Readable.from((async function* () {
    for (let i = 0; i < BIG / chunk.length; i++) {
      progress.sent += chunk.length;
      yield chunk;
      if (i % 8 === 7) await new Promise((r) => setTimeout(r, 10));
    }
  })(), { objectMode: false });
}

test("SIGKILL during a 300 MiB PUT: after restart the key holds the previous object (or nothing), no temp file leaks", async () => {
  const agent = cluster.agents[0]!;
  await client.send(new CreateBucketCommand({ Bucket: "crash" }));
  const previous = randomBytes(8 * 1024 * 1024 + 123);
  await client.send(new PutObjectCommand({ Bucket: "crash", Key: "has-old", Body: previous }));
  const wantOld = createHash("sha256").update(previous).digest("hex");

  const p1 = { sent: 0 }, p2 = { sent: 0 };
  const put1 = client.send(new PutObjectCommand({ Bucket: "crash", Key: "has-old", Body: slowBody(p1), ContentLength: BIG }));
  const put2 = client.send(new PutObjectCommand({ Bucket: "crash", Key: "was-empty", Body: slowBody(p2), ContentLength: BIG }));
  put1.catch(() => {});
  put2.catch(() => {});
  await waitFor("100 MiB of both uploads on the wire", () => p1.sent > 100 << 20 && p2.sent > 100 << 20, 60_000, 20);
  const tmpDir = path.join(agent.dataDir, "replicas", "objects", "tmp");
  assert.ok((await readdir(tmpDir)).length >= 1, "the uploads are being staged in replicas/objects/tmp");
  await agent.kill("SIGKILL");
  await assert.rejects(put1);
  await assert.rejects(put2);

  await agent.start();
  assert.equal(await bodyHash("has-old"), wantOld);
  await assert.rejects(client.send(new HeadObjectCommand({ Bucket: "crash", Key: "was-empty" })), (e: { name?: string }) => e.name === "NotFound");
  assert.deepEqual(await readdir(tmpDir), []);
  const recovered = agent.logs().find((l) => l.msg === "replica store: cleaned up after an unclean stop");
  assert.ok(recovered && Number(recovered.tmpFiles) >= 2, `recovery logged: ${JSON.stringify(recovered)}`);

  // And the store still takes writes after the crash.
  await client.send(new PutObjectCommand({ Bucket: "crash", Key: "was-empty", Body: "after the crash" }));
  const r = await client.send(new GetObjectCommand({ Bucket: "crash", Key: "was-empty" }));
  assert.equal(await r.Body!.transformToString(), "after the crash");
});
