/**
 * Object and bucket tagging with real clients against a real
 * `thoc-node agent --dev`: Debian's aws-cli v2 (/usr/bin/aws) and the
 * pyenv aws-cli v1 (`aws` on PATH) through s3api put-object --tagging,
 * put-object-tagging, get-object-tagging, delete-object-tagging,
 * put-bucket-tagging, get-bucket-tagging and get-object (TagCount), and
 * boto3's put_object(Tagging=...). Each also sees a refused request's S3
 * error (the agent stays up).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import * as s3 from "@aws-sdk/client-s3";
import { startCluster, type Cluster } from "./harness.js";
import { cliEnv, findAwsV1 } from "./s3-cli.js";

const run = promisify(execFile);
const ACCESS = "AKIATHOCTAGGINGTEST1";
const SECRET = "tagging-test-secret/0123456789+abcdefghij";
const REGION = "us-east-1";
const AWS2 = "/usr/bin/aws";
const PYTHON = "/usr/bin/python3";



const tagMap = (out: string) => Object.fromEntries((JSON.parse(out) as { TagSet: { Key: string; Value: string }[] }).TagSet.map((t) => [t.Key, t.Value]));

describe("object and bucket tagging with real S3 clients against a --dev agent", () => {
  let cluster: Cluster;
  let endpoint: string;
  let env: NodeJS.ProcessEnv;
  let dir: string;
  let sdk: s3.S3Client;
  before(async () => {
    cluster = await startCluster(1, { env: { THOC_S3_ACCESS_KEY: ACCESS, THOC_S3_SECRET_KEY: SECRET } });
    endpoint = cluster.agents[0]!.s3Url;
    env = cliEnv(endpoint, ACCESS, SECRET, REGION);
    dir = await mkdtemp(path.join(tmpdir(), "thoc-s3-tagging-"));
    sdk = new s3.S3Client({ endpoint, region: REGION, forcePathStyle: true, maxAttempts: 1, credentials: { accessKeyId: ACCESS, secretAccessKey: SECRET } });
  });
  after(async () => {
    sdk?.destroy();
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** The same round of s3api tagging calls, for either CLI version. */
  async function cliRound(cli: string, bucket: string): Promise<void> {
    const body = path.join(dir, `${bucket}.in`);
    await writeFile(body, "tagged by the CLI\n");
    const aws = async (args: string[]) => (await run(cli, ["--endpoint-url", endpoint, "--output", "json", ...args], { env, timeout: 120_000 })).stdout;
    await aws(["s3api", "create-bucket", "--bucket", bucket]);
    await aws(["s3api", "put-object", "--bucket", bucket, "--key", "doc.txt", "--body", body, "--tagging", "team=infra&stage=dev%20box"]);
    assert.deepEqual(tagMap(await aws(["s3api", "get-object-tagging", "--bucket", bucket, "--key", "doc.txt"])), { team: "infra", stage: "dev box" });
    const etag = (JSON.parse(await aws(["s3api", "head-object", "--bucket", bucket, "--key", "doc.txt"])) as { ETag: string }).ETag;
    await aws(["s3api", "put-object-tagging", "--bucket", bucket, "--key", "doc.txt", "--tagging", JSON.stringify({ TagSet: [{ Key: "owner", Value: "ops" }, { Key: "n", Value: "1" }, { Key: "x", Value: "" }] })]);
    assert.deepEqual(tagMap(await aws(["s3api", "get-object-tagging", "--bucket", bucket, "--key", "doc.txt"])), { owner: "ops", n: "1", x: "" });
    const got = JSON.parse(await aws(["s3api", "get-object", "--bucket", bucket, "--key", "doc.txt", path.join(dir, `${bucket}.out`)])) as { TagCount?: number; ETag: string };
    assert.equal(got.TagCount, 3);
    assert.equal(got.ETag, etag, "PutObjectTagging did not rewrite the object");
    // S3's error, and nothing changed.
    const tooMany = JSON.stringify({ TagSet: Array.from({ length: 11 }, (_, i) => ({ Key: `k${i}`, Value: "v" })) });
    await assert.rejects(aws(["s3api", "put-object-tagging", "--bucket", bucket, "--key", "doc.txt", "--tagging", tooMany]),
      (e: { stderr: string }) => /BadRequest/.test(e.stderr) && /Object tags cannot be greater than 10/.test(e.stderr));
    await assert.rejects(aws(["s3api", "put-object", "--bucket", bucket, "--key", "bad.txt", "--body", body, "--tagging", "aws:x=1"]),
      (e: { stderr: string }) => /InvalidTag/.test(e.stderr));
    assert.deepEqual(tagMap(await aws(["s3api", "get-object-tagging", "--bucket", bucket, "--key", "doc.txt"])), { owner: "ops", n: "1", x: "" });
    await aws(["s3api", "delete-object-tagging", "--bucket", bucket, "--key", "doc.txt"]);
    assert.deepEqual(tagMap(await aws(["s3api", "get-object-tagging", "--bucket", bucket, "--key", "doc.txt"])), {});
    // Bucket tagging (shorthand syntax).
    await assert.rejects(aws(["s3api", "get-bucket-tagging", "--bucket", bucket]), (e: { stderr: string }) => /NoSuchTagSet/.test(e.stderr));
    await aws(["s3api", "put-bucket-tagging", "--bucket", bucket, "--tagging", "TagSet=[{Key=cost,Value=42},{Key=team,Value=infra}]"]);
    assert.deepEqual(tagMap(await aws(["s3api", "get-bucket-tagging", "--bucket", bucket])), { cost: "42", team: "infra" });
    await aws(["s3api", "delete-bucket-tagging", "--bucket", bucket]);
    await assert.rejects(aws(["s3api", "get-bucket-tagging", "--bucket", bucket]), (e: { stderr: string }) => /NoSuchTagSet/.test(e.stderr));
  }

  test("aws-cli v2 (Debian): s3api object and bucket tagging", async () => {
    assert.ok(existsSync(AWS2), "Debian awscli v2 is not installed at /usr/bin/aws");
    await cliRound(AWS2, "cli-v2-tags");
  });

  test("aws-cli v1 (pyenv): s3api object and bucket tagging", async () => {
    const v1 = await findAwsV1();
    assert.ok(v1, "aws-cli v1 is not on PATH (pyenv aws-cli 1.x)");
    await cliRound(v1, "cli-v1-tags");
  });

  test("boto3: put_object(Tagging=...), put/get_object_tagging, bucket tagging, InvalidTag", async () => {
    assert.ok(existsSync(PYTHON), "python3 is not installed");
    const script = `
import json, sys, boto3
from botocore.exceptions import ClientError
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="${REGION}")
s3.create_bucket(Bucket="boto-tags")
s3.put_object(Bucket="boto-tags", Key="k", Body=b"hello", Tagging="a=b&c=d%20e")
out = {"put": s3.get_object_tagging(Bucket="boto-tags", Key="k")["TagSet"]}
out["count"] = s3.get_object(Bucket="boto-tags", Key="k").get("TagCount")
s3.put_object_tagging(Bucket="boto-tags", Key="k", Tagging={"TagSet": [{"Key": "z", "Value": "1"}]})
out["replaced"] = s3.get_object_tagging(Bucket="boto-tags", Key="k")["TagSet"]
try:
    s3.put_object_tagging(Bucket="boto-tags", Key="k", Tagging={"TagSet": [{"Key": "k" * 129, "Value": "1"}]})
    out["error"] = None
except ClientError as e:
    out["error"] = [e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]]
s3.put_bucket_tagging(Bucket="boto-tags", Tagging={"TagSet": [{"Key": "b", "Value": "2"}]})
out["bucket"] = s3.get_bucket_tagging(Bucket="boto-tags")["TagSet"]
print(json.dumps(out))
`;
    const { stdout } = await run(PYTHON, ["-c", script, endpoint], { env, timeout: 120_000 });
    const out = JSON.parse(stdout) as Record<string, unknown>;
    const m = (x: unknown) => Object.fromEntries((x as { Key: string; Value: string }[]).map((t) => [t.Key, t.Value]));
    assert.deepEqual(m(out.put), { a: "b", c: "d e" });
    assert.equal(out.count, 2);
    assert.deepEqual(m(out.replaced), { z: "1" });
    assert.deepEqual(out.error, ["InvalidTag", 400]);
    assert.deepEqual(m(out.bucket), { b: "2" });
    // The agent is still up and the object untouched.
    const g = await sdk.send(new s3.GetObjectCommand({ Bucket: "boto-tags", Key: "k" }));
    assert.equal(await g.Body!.transformToString(), "hello");
  });
});
