/**
 * HTTPS on the S3 port (s3.tls.certFile / s3.tls.keyFile) against a real
 * agent, with a test CA and a certificate for the agent's loopback IP, through
 * real clients told to trust that CA: @aws-sdk/client-s3, Debian's aws-cli
 * (--ca-bundle and AWS_CA_BUNDLE), rclone (--ca-cert) and boto3 (Debian's
 * python3-boto3). Controls: a client that does not trust the CA is refused
 * (so verification is on), and a plaintext request to the HTTPS port is
 * answered with a 400 S3 error saying to use https://, not a reset. An
 * unreadable certificate stops the agent with exit 2 naming the option, before
 * the S3 port is bound.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import https from "node:https";
import path from "node:path";
import { promisify } from "node:util";
import * as s3 from "@aws-sdk/client-s3";
import type { TestCertificates } from "../core/testutil.js";
import { AgentProcess } from "./harness.js";
import { S3_ENV } from "./objectstore-util.js";
import { REGION, startTlsAgent, type TlsAgent } from "./s3-tls-agent.js";

const run = promisify(execFile);
let tls: TlsAgent | undefined;
let root: string;
let agent: AgentProcess;
let certs: TestCertificates;
let endpoint: string;

before(async () => {
  tls = await startTlsAgent("thoc-s3tls-");
  ({ root, agent, certs, endpoint } = tls);
});
after(async () => { await tls?.stop(); });

const sdk = (ca?: Buffer, url = endpoint) => new s3.S3Client({
  endpoint: url, region: REGION, forcePathStyle: true, maxAttempts: 1,
  credentials: { accessKeyId: S3_ENV.THOC_S3_ACCESS_KEY, secretAccessKey: S3_ENV.THOC_S3_SECRET_KEY },
  requestHandler: { requestTimeout: 15_000, connectionTimeout: 3_000, ...(ca ? { httpsAgent: new https.Agent({ ca }) } : {}) },
});

/** The CLIs' environment (our keys, no user config, rclone remote `t:`), without the test CA unless `extra` names it. */
const cliEnv = (extra: NodeJS.ProcessEnv = {}) => tls!.env(extra);

test("the agent says it serves S3 over HTTPS", () => {
  assert.ok(agent.logs().some((l) => l.msg === "S3 API listening" && l.s3 === `https://${agent.bind}:7480`), "log line with the https URL");
});

test("@aws-sdk/client-s3 over HTTPS with the test CA; without it the certificate is refused", async () => {
  const c = sdk(await readFile(certs.caFile));
  await c.send(new s3.CreateBucketCommand({ Bucket: "tls-sdk" }));
  await c.send(new s3.PutObjectCommand({ Bucket: "tls-sdk", Key: "k", Body: "over tls" }));
  const got = await c.send(new s3.GetObjectCommand({ Bucket: "tls-sdk", Key: "k" }));
  assert.equal(await got.Body!.transformToString(), "over tls");
  await assert.rejects(sdk().send(new s3.ListBucketsCommand({})), (e: Error & { code?: string }) => /self[- ]signed|unable to verify|UNABLE_TO_GET_ISSUER|SELF_SIGNED/i.test(`${e.code} ${e.message}`),
    "a client that does not trust the CA");
});

test("aws-cli with --ca-bundle and with AWS_CA_BUNDLE; without a CA it refuses the certificate", async () => {
  assert.ok(existsSync("/usr/bin/aws"), "Debian awscli is not installed: apt-get install awscli");
  const aws = (args: string[], extra: NodeJS.ProcessEnv = {}) => run("/usr/bin/aws", ["--endpoint-url", endpoint, ...args], { env: cliEnv(extra), timeout: 60_000 });
  const file = path.join(root, "up.txt");
  await writeFile(file, "via aws-cli over tls");
  await aws(["--ca-bundle", certs.caFile, "s3", "mb", "s3://tls-cli"]);
  await aws(["--ca-bundle", certs.caFile, "s3", "cp", file, "s3://tls-cli/up.txt"]);
  const ls = await aws(["s3", "ls", "s3://tls-cli/"], { AWS_CA_BUNDLE: certs.caFile });
  assert.match(ls.stdout, /20 up\.txt/);
  const back = path.join(root, "down.txt");
  await aws(["s3", "cp", "s3://tls-cli/up.txt", back], { AWS_CA_BUNDLE: certs.caFile });
  assert.equal(await readFile(back, "utf8"), "via aws-cli over tls");
  await assert.rejects(aws(["s3", "ls", "s3://tls-cli/"]), (e: { stderr?: string }) => /SSL|certificate/i.test(e.stderr ?? ""), "no CA: certificate verify failed");
});

test("rclone with --ca-cert", async () => {
  assert.ok(existsSync("/usr/bin/rclone"), "Debian rclone is not installed: apt-get install rclone");
  const env = cliEnv();
  const rclone = (args: string[], ca = true) => run("/usr/bin/rclone", ["-q", "--retries", "1", "--low-level-retries", "1", ...(ca ? ["--ca-cert", certs.caFile] : []), ...args], { env, timeout: 60_000 });
  const file = path.join(root, "rclone.txt");
  await writeFile(file, "via rclone over tls");
  await rclone(["mkdir", "t:tls-rclone"]);
  await rclone(["copyto", file, "t:tls-rclone/r.txt"]);
  assert.equal((await rclone(["cat", "t:tls-rclone/r.txt"])).stdout, "via rclone over tls");
  await assert.rejects(rclone(["cat", "t:tls-rclone/r.txt"], false), (e: { stderr?: string }) => /x509|certificate/i.test(e.stderr ?? ""), "no CA: x509 unknown authority");
});

test("boto3 (Debian's python3-boto3) with verify=CA", async () => {
  assert.ok(existsSync("/usr/bin/python3"), "python3 is not installed");
  const script = `
import sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], verify=sys.argv[2], region_name="${REGION}",
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
s3.create_bucket(Bucket="tls-boto3")
s3.put_object(Bucket="tls-boto3", Key="b.txt", Body=b"via boto3 over tls")
print(s3.get_object(Bucket="tls-boto3", Key="b.txt")["Body"].read().decode())
`;
  const r = await run("/usr/bin/python3", ["-c", script, endpoint, certs.caFile], { env: cliEnv(), timeout: 60_000 })
    .catch((e: { stderr?: string }) => assert.fail(`boto3 failed (apt-get install python3-boto3?): ${e.stderr}`));
  assert.equal(r.stdout.trim(), "via boto3 over tls");
});

test("a plaintext request to the HTTPS port gets a 400 S3 error naming https://, and the port still serves TLS", async () => {
  const plain = `http://${agent.bind}:7480`;
  const r = await fetch(`${plain}/tls-sdk/k`, { signal: AbortSignal.timeout(5000) });
  assert.equal(r.status, 400);
  const body = await r.text();
  assert.match(body, /<Code>InvalidRequest<\/Code>/);
  assert.match(body, /https:\/\//);
  await assert.rejects(sdk(undefined, plain).send(new s3.ListBucketsCommand({})), (e: Error & { $metadata?: { httpStatusCode?: number } }) => e.$metadata?.httpStatusCode === 400 && /https/.test(e.message),
    "an S3 client pointed at http:// reads the error");
  const ok = await sdk(await readFile(certs.caFile)).send(new s3.ListBucketsCommand({}));
  assert.ok(ok.Buckets?.some((b) => b.Name === "tls-sdk"));
});

test("an unreadable s3.tls.certFile stops the agent with exit 2 naming the option", async () => {
  const bad = new AgentProcess("bad", `${agent.bind.replace(/\.2$/, ".3")}`, path.join(root, "bad"), { env: { ...S3_ENV, THOC_S3_TLS_CERT_FILE: "/nonexistent/s3.crt", THOC_S3_TLS_KEY_FILE: certs.keyFile } });
  bad.spawn();
  assert.equal(await bad.waitExit(), 2);
  assert.match(bad.output, /s3\.tls\.certFile: cannot read \/nonexistent\/s3\.crt/);
  assert.doesNotMatch(bad.output, /"msg":"(S3 API listening|store opened)"/, "refused before the store is opened or a port bound");
  const half = new AgentProcess("half", `${agent.bind.replace(/\.2$/, ".4")}`, path.join(root, "half"), { env: { ...S3_ENV, THOC_S3_TLS_CERT_FILE: certs.certFile } });
  half.spawn();
  assert.equal(await half.waitExit(), 2);
  assert.match(half.output, /s3\.tls\.keyFile/);
});
