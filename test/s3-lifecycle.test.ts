/**
 * Lifecycle rules on three real agents in production mode: configured with aws-cli v2, applied
 * by the agents' own workers (local preset: a pass every 2 s), each expired
 * object deleted by exactly one node (the lifecycle metrics across the
 * cluster add up to the number of objects), objects outside the rule kept.
 * Days cannot pass in a test, so the rule expires at a date in the past;
 * day arithmetic is covered with a fake clock in objectstore/replica/lifecycle.test.ts.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { promisify } from "node:util";
import * as s3 from "@aws-sdk/client-s3";
import { startCluster, waitFor, type Cluster } from "./harness.js";
import { S3_ENV, listAll, s3client, waitRing } from "./objectstore-util.js";

const run = promisify(execFile);
const AWS = "/usr/bin/aws";
let cluster: Cluster;

before(async () => {
  // Production mode (config file, cluster key, cluster PKI with TLS between agents), as the unit runs it.
  cluster = await startCluster(3, { env: S3_ENV, dev: false });
  await waitRing(cluster.agents, ["n1", "n2", "n3"]);
});
after(async () => cluster?.stop());

async function lifecycleActions(a: Cluster["agents"][number], action: string): Promise<number> {
  const text = await (await fetch(`${a.httpUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`thoc_objectstore_lifecycle_actions_total{action="${action}"}`));
  return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : 0;
}

test("a lifecycle rule set with aws-cli expires matching objects on every node's worker, each once", async () => {
  assert.ok(existsSync(AWS), "Debian awscli is not installed: apt-get install awscli");
  const [a, b] = cluster.agents;
  const c = s3client(a!);
  await c.send(new s3.CreateBucketCommand({ Bucket: "aging" }));
  const old = Array.from({ length: 30 }, (_, i) => `old/${String(i).padStart(2, "0")}`);
  for (const k of old) await c.send(new s3.PutObjectCommand({ Bucket: "aging", Key: k, Body: k }));
  for (const k of ["new/1", "new/2"]) await c.send(new s3.PutObjectCommand({ Bucket: "aging", Key: k, Body: k }));
  const env = {
    PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/root", AWS_ACCESS_KEY_ID: S3_ENV.THOC_S3_ACCESS_KEY, AWS_SECRET_ACCESS_KEY: S3_ENV.THOC_S3_SECRET_KEY,
    AWS_DEFAULT_REGION: "us-east-1", AWS_CONFIG_FILE: "/dev/null", AWS_SHARED_CREDENTIALS_FILE: "/dev/null", AWS_PAGER: "",
  };
  const before = (await Promise.all(cluster.agents.map((x) => lifecycleActions(x, "expire")))).reduce((s, n) => s + n, 0);
  const config = JSON.stringify({ Rules: [
    { ID: "old-stuff", Status: "Enabled", Filter: { Prefix: "old/" }, Expiration: { Date: "2020-01-01T00:00:00Z" } },
    { ID: "stale-uploads", Status: "Enabled", Filter: { Prefix: "" }, AbortIncompleteMultipartUpload: { DaysAfterInitiation: 7 } },
  ] });
  await run(AWS, ["--endpoint-url", a!.s3Url, "s3api", "put-bucket-lifecycle-configuration", "--bucket", "aging", "--lifecycle-configuration", config], { env });
  const got = JSON.parse((await run(AWS, ["--endpoint-url", b!.s3Url, "s3api", "get-bucket-lifecycle-configuration", "--bucket", "aging"], { env })).stdout) as { Rules: { ID: string; Filter: { Prefix?: string } }[] };
  assert.deepEqual(got.Rules.map((r) => [r.ID, r.Filter.Prefix]), [["old-stuff", "old/"], ["stale-uploads", ""]], "read back through another node");

  await waitFor("the old/ objects expire", async () => (await listAll(c, "aging")).length === 2 || undefined, 60_000, 500);
  assert.deepEqual(await listAll(s3client(b!), "aging"), ["new/1", "new/2"]);
  const after = (await Promise.all(cluster.agents.map((x) => lifecycleActions(x, "expire")))).reduce((s, n) => s + n, 0);
  assert.equal(after - before, old.length, "each expired object was deleted by one node only");

  await run(AWS, ["--endpoint-url", a!.s3Url, "s3api", "delete-bucket-lifecycle", "--bucket", "aging"], { env });
  await assert.rejects(run(AWS, ["--endpoint-url", a!.s3Url, "s3api", "get-bucket-lifecycle-configuration", "--bucket", "aging"], { env }), /NoSuchLifecycleConfiguration/);
});
