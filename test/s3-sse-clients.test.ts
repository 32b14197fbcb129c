/**
 * Encryption at rest through real clients against a real agent serving S3
 * over HTTPS (s3.tls.certFile / keyFile, a test CA), the production
 * configuration SSE-C needs (s3.sseCustomerKeysOverHttp stays off): Debian's
 * aws-cli v2 (`s3 cp --sse AES256`, `s3 cp --sse-c AES256 --sse-c-key
 * fileb://key`, single PUT and multipart, and a GET without the key refused)
 * and boto3 with SSECustomerKey. Plain HTTP with SSE-C is refused by the
 * protocol suite (objectstore/s3/suite-sse.ts).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import type { TestCertificates } from "../core/testutil.js";
import type { AgentProcess } from "./harness.js";
import { REGION, startTlsAgent, type TlsAgent } from "./s3-tls-agent.js";

const run = promisify(execFile);
const MiB = 1024 * 1024;
const AWS = "/usr/bin/aws";
let tls: TlsAgent | undefined;
let root: string;
let agent: AgentProcess;
let certs: TestCertificates;
let endpoint: string;

before(async () => {
  tls = await startTlsAgent("thoc-s3sse-");
  ({ root, agent, certs, endpoint } = tls);
});
after(async () => { await tls?.stop(); });

/** The CLIs' environment with the test CA. */
const cliEnv = () => tls!.env({ AWS_CA_BUNDLE: certs.caFile });

const aws = async (args: string[]) => {
  assert.ok(existsSync(AWS), "Debian awscli is not installed: apt-get install awscli");
  return (await run(AWS, ["--endpoint-url", endpoint, ...args], { env: cliEnv(), timeout: 120_000, maxBuffer: 16 * MiB })).stdout;
};
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

test("aws-cli: s3 cp --sse AES256 (single PUT and multipart), head-object says AES256 and the ETag is the plaintext's MD5", async () => {
  await aws(["s3", "mb", "s3://sse-cli"]);
  const small = path.join(root, "small.txt"), big = path.join(root, "big.bin");
  await writeFile(small, "SSE-S3 via aws-cli");
  const bigData = randomBytes(20 * MiB);
  await writeFile(big, bigData);
  await aws(["s3", "cp", "--sse", "AES256", small, "s3://sse-cli/small.txt", "--only-show-errors"]);
  await aws(["s3", "cp", "--sse", "AES256", big, "s3://sse-cli/big.bin", "--only-show-errors"]);
  const head = JSON.parse(await aws(["s3api", "head-object", "--bucket", "sse-cli", "--key", "small.txt"])) as { ServerSideEncryption?: string; ETag?: string };
  assert.equal(head.ServerSideEncryption, "AES256");
  assert.equal(head.ETag, `"${createHash("md5").update("SSE-S3 via aws-cli").digest("hex")}"`);
  const bigHead = JSON.parse(await aws(["s3api", "head-object", "--bucket", "sse-cli", "--key", "big.bin"])) as { ServerSideEncryption?: string; ETag?: string };
  assert.equal(bigHead.ServerSideEncryption, "AES256");
  assert.match(bigHead.ETag ?? "", /-\d+"$/, "aws-cli uploaded it in parts");
  const back = path.join(root, "big.back");
  await aws(["s3", "cp", "s3://sse-cli/big.bin", back, "--only-show-errors"]);
  assert.equal(sha(await readFile(back)), sha(bigData));
});

test("aws-cli: s3 cp --sse-c AES256 --sse-c-key fileb://key over HTTPS (single PUT and multipart); without the key the GET is refused", async () => {
  const keyFile = path.join(root, "sse-c.key");
  await writeFile(keyFile, randomBytes(32));
  const data = randomBytes(17 * MiB);
  const src = path.join(root, "c.bin");
  await writeFile(src, data);
  await aws(["s3", "cp", "--sse-c", "AES256", "--sse-c-key", `fileb://${keyFile}`, src, "s3://sse-cli/c.bin", "--only-show-errors"]);
  const small = path.join(root, "c-small.txt");
  await writeFile(small, "SSE-C via aws-cli");
  await aws(["s3", "cp", "--sse-c", "AES256", "--sse-c-key", `fileb://${keyFile}`, small, "s3://sse-cli/c-small.txt", "--only-show-errors"]);
  const back = path.join(root, "c.back");
  await aws(["s3", "cp", "--sse-c", "AES256", "--sse-c-key", `fileb://${keyFile}`, "s3://sse-cli/c.bin", back, "--only-show-errors"]);
  assert.equal(sha(await readFile(back)), sha(data));
  const smallBack = path.join(root, "c-small.back");
  await aws(["s3", "cp", "--sse-c", "AES256", "--sse-c-key", `fileb://${keyFile}`, "s3://sse-cli/c-small.txt", smallBack, "--only-show-errors"]);
  assert.equal(await readFile(smallBack, "utf8"), "SSE-C via aws-cli");
  await assert.rejects(aws(["s3", "cp", "s3://sse-cli/c-small.txt", path.join(root, "nokey"), "--only-show-errors"]), (e: { stderr?: string }) => /400|Bad Request|InvalidRequest/.test(e.stderr ?? ""),
    "no key: 400");
  const wrong = path.join(root, "wrong.key");
  await writeFile(wrong, randomBytes(32));
  await assert.rejects(aws(["s3", "cp", "--sse-c", "AES256", "--sse-c-key", `fileb://${wrong}`, "s3://sse-cli/c-small.txt", path.join(root, "wrongkey"), "--only-show-errors"]),
    (e: { stderr?: string }) => /403|Forbidden|AccessDenied/.test(e.stderr ?? ""), "wrong key: 403");
});

test("boto3 with SSECustomerKey over HTTPS: put, get, ranged get; get without the key fails with 400", async () => {
  assert.ok(existsSync("/usr/bin/python3"), "python3 is not installed");
  const script = `
import sys, os, boto3, botocore
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], verify=sys.argv[2], region_name="${REGION}",
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
key = os.urandom(32)
s3.create_bucket(Bucket="sse-boto3")
body = b"SSE-C via boto3 " * 1000
put = s3.put_object(Bucket="sse-boto3", Key="b", Body=body, SSECustomerAlgorithm="AES256", SSECustomerKey=key)
assert put["SSECustomerAlgorithm"] == "AES256", put
got = s3.get_object(Bucket="sse-boto3", Key="b", SSECustomerAlgorithm="AES256", SSECustomerKey=key)
assert got["Body"].read() == body
rng = s3.get_object(Bucket="sse-boto3", Key="b", Range="bytes=5-20", SSECustomerAlgorithm="AES256", SSECustomerKey=key)
assert rng["Body"].read() == body[5:21]
try:
    s3.get_object(Bucket="sse-boto3", Key="b")
    print("no error")
except botocore.exceptions.ClientError as e:
    print(e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])
s3.put_object(Bucket="sse-boto3", Key="s", Body=b"x", ServerSideEncryption="AES256")
print(s3.head_object(Bucket="sse-boto3", Key="s")["ServerSideEncryption"])
`;
  const env = cliEnv();
  delete env.AWS_CA_BUNDLE;
  const r = await run("/usr/bin/python3", ["-c", script, endpoint, certs.caFile], { env, timeout: 60_000 })
    .catch((e: { stderr?: string }) => assert.fail(`boto3 failed (apt-get install python3-boto3?): ${e.stderr}`));
  assert.deepEqual(r.stdout.trim().split("\n"), ["InvalidRequest 400", "AES256"]);
});

test("no key material in the agent's log", () => {
  const logs = JSON.stringify(agent.logs());
  assert.doesNotMatch(logs, /x-amz-server-side-encryption-customer-key"?\s*[:=]\s*"?[A-Za-z0-9+/]{43}=/);
});
