/**
 * Real S3 clients against a real `thoc-node agent --dev` (durable local blob
 * store, key registry, S3 server as wired by the objectstore subsystem):
 * @aws-sdk/client-s3, Debian's aws-cli (s3 cp/sync/ls/rm, s3api multipart of
 * a 50 MiB file) and rclone (copy + check round trip); auth failures and bad
 * input answered with their S3 errors while the agent stays up.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import * as s3 from "@aws-sdk/client-s3";
import { startCluster, type Cluster } from "./harness.js";

const run = promisify(execFile);
const ACCESS = "AKIATHOCCLIENTTEST01";
const SECRET = "clients-test-secret/0123456789abcdefghijklmn";
const MiB = 1024 * 1024;
const AWS = "/usr/bin/aws";
// Real clients are the point of this file: a missing one fails the test (`.ci/run` installs them).
const needAws = () => assert.ok(existsSync(AWS) && existsSync("/usr/bin/python3"), "Debian awscli is not installed: apt-get install awscli");
const needRclone = () => assert.ok(existsSync("/usr/bin/rclone"), "Debian rclone is not installed: apt-get install rclone");

/** A clean environment for the CLIs: our keys, no user config, no CA bundle overrides (rclone rejects them on http). */
function cliEnv(endpoint: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const k of ["PATH", "HOME", "LANG", "TMPDIR"]) if (process.env[k]) env[k] = process.env[k];
  return {
    ...env, AWS_ACCESS_KEY_ID: ACCESS, AWS_SECRET_ACCESS_KEY: SECRET, AWS_DEFAULT_REGION: "us-east-1",
    AWS_CONFIG_FILE: "/dev/null", AWS_SHARED_CREDENTIALS_FILE: "/dev/null", AWS_PAGER: "",
    RCLONE_CONFIG_T_TYPE: "s3", RCLONE_CONFIG_T_PROVIDER: "Other", RCLONE_CONFIG_T_ACCESS_KEY_ID: ACCESS,
    RCLONE_CONFIG_T_SECRET_ACCESS_KEY: SECRET, RCLONE_CONFIG_T_ENDPOINT: endpoint, RCLONE_CONFIG_T_REGION: "us-east-1",
  };
}

describe("real S3 clients against a --dev agent", () => {
  let cluster: Cluster;
  let endpoint: string;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let sdk: s3.S3Client;
  const aws = (args: string[], timeout = 120_000) => {
    const quiet = args[0] === "s3" && ["cp", "sync", "rm", "mv"].includes(args[1]!) ? ["--only-show-errors"] : [];
    return run(AWS, ["--endpoint-url", endpoint, ...args, ...quiet], { env, timeout, maxBuffer: 64 * MiB });
  };
  const rclone = (args: string[]) => run("/usr/bin/rclone", ["--config", "/dev/null", "-q", ...args], { env, timeout: 120_000 });

  before(async () => {
    cluster = await startCluster(1, { env: { THOC_S3_ACCESS_KEY: ACCESS, THOC_S3_SECRET_KEY: SECRET } });
    endpoint = cluster.agents[0]!.s3Url;
    env = cliEnv(endpoint);
    dir = await mkdtemp(path.join(tmpdir(), "thoc-s3-clients-"));
    sdk = new s3.S3Client({ endpoint, region: "us-east-1", forcePathStyle: true, credentials: { accessKeyId: ACCESS, secretAccessKey: SECRET } });
  });
  after(async () => {
    sdk?.destroy();
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("@aws-sdk/client-s3: bucket, CRC32 put (header and aws-chunked trailer), get, list, delete", async () => {
    await sdk.send(new s3.CreateBucketCommand({ Bucket: "sdk-bucket" }));
    const data = randomBytes(200_000);
    const put = await sdk.send(new s3.PutObjectCommand({ Bucket: "sdk-bucket", Key: "dir/obj.bin", Body: data, Metadata: { k: "v" } }));
    assert.equal(put.ETag, `"${createHash("md5").update(data).digest("hex")}"`);
    assert.ok(put.ChecksumCRC32);
    const { Readable } = await import("node:stream");
    await sdk.send(new s3.PutObjectCommand({ Bucket: "sdk-bucket", Key: "dir/stream.bin", Body: Readable.from([data]), ContentLength: data.length }));
    const g = await sdk.send(new s3.GetObjectCommand({ Bucket: "sdk-bucket", Key: "dir/stream.bin", ChecksumMode: "ENABLED" }));
    assert.ok(Buffer.from(await g.Body!.transformToByteArray()).equals(data));
    assert.equal(g.ChecksumCRC32, put.ChecksumCRC32);
    const l = await sdk.send(new s3.ListObjectsV2Command({ Bucket: "sdk-bucket", Prefix: "dir/" }));
    assert.deepEqual(l.Contents!.map((o) => o.Key), ["dir/obj.bin", "dir/stream.bin"]);
    await sdk.send(new s3.DeleteObjectsCommand({ Bucket: "sdk-bucket", Delete: { Objects: [{ Key: "dir/obj.bin" }, { Key: "dir/stream.bin" }] } }));
    await sdk.send(new s3.DeleteBucketCommand({ Bucket: "sdk-bucket" }));
  });

  test("aws-cli: s3 mb, cp (50 MiB, multipart), sync, ls, rm", async () => {
    needAws();
    const big = path.join(dir, "big50.bin");
    await writeFile(big, randomBytes(50 * MiB));
    await aws(["s3", "mb", "s3://cli-bucket"]);
    await aws(["s3", "cp", big, "s3://cli-bucket/big50.bin"]);
    await aws(["s3", "cp", "s3://cli-bucket/big50.bin", path.join(dir, "big50.back")]);
    assert.ok((await readFile(big)).equals(await readFile(path.join(dir, "big50.back"))));
    const tree = path.join(dir, "tree");
    await mkdir(path.join(tree, "sub dir"), { recursive: true });
    for (let i = 0; i < 5; i++) await writeFile(path.join(tree, `f${i}.txt`), `file ${i}\n`);
    await writeFile(path.join(tree, "sub dir", "a+b é.txt"), "unicode\n");
    await aws(["s3", "sync", tree, "s3://cli-bucket/tree/"]);
    const ls = (await aws(["s3", "ls", "--recursive", "s3://cli-bucket/tree/"])).stdout;
    assert.equal(ls.trim().split("\n").length, 6, ls);
    assert.match(ls, /tree\/sub dir\/a\+b é\.txt/);
    const again = (await aws(["s3", "sync", tree, "s3://cli-bucket/tree/"])).stdout;
    assert.equal(again.trim(), "", "a second sync uploads nothing");
    await aws(["s3", "rm", "--recursive", "s3://cli-bucket/tree/"]);
    assert.equal((await aws(["s3", "ls", "s3://cli-bucket/tree/"]).catch((e: { stdout: string }) => e)).stdout.trim(), "");
  });

  test("aws-cli: s3api multipart upload of a 50 MiB file in 5 parts, ETag '<md5 of md5s>-5'", async () => {
    needAws();
    const data = randomBytes(50 * MiB);
    await aws(["s3api", "create-bucket", "--bucket", "mp-bucket"]);
    const created = JSON.parse((await aws(["s3api", "create-multipart-upload", "--bucket", "mp-bucket", "--key", "big.bin"])).stdout) as { UploadId: string };
    const parts: { PartNumber: number; ETag: string }[] = [];
    const md5s: Buffer[] = [];
    for (let i = 0; i < 5; i++) {
      const part = data.subarray(i * 10 * MiB, (i + 1) * 10 * MiB);
      const file = path.join(dir, `part${i}`);
      await writeFile(file, part);
      const r = JSON.parse((await aws(["s3api", "upload-part", "--bucket", "mp-bucket", "--key", "big.bin", "--part-number", String(i + 1), "--upload-id", created.UploadId, "--body", file])).stdout) as { ETag: string };
      parts.push({ PartNumber: i + 1, ETag: r.ETag });
      md5s.push(createHash("md5").update(part).digest());
    }
    const listed = JSON.parse((await aws(["s3api", "list-parts", "--bucket", "mp-bucket", "--key", "big.bin", "--upload-id", created.UploadId])).stdout) as { Parts: unknown[] };
    assert.equal(listed.Parts.length, 5);
    const spec = path.join(dir, "parts.json");
    await writeFile(spec, JSON.stringify({ Parts: parts }));
    const done = JSON.parse((await aws(["s3api", "complete-multipart-upload", "--bucket", "mp-bucket", "--key", "big.bin", "--upload-id", created.UploadId, "--multipart-upload", `file://${spec}`])).stdout) as { ETag: string };
    assert.equal(done.ETag, `"${createHash("md5").update(Buffer.concat(md5s)).digest("hex")}-5"`);
    const head = JSON.parse((await aws(["s3api", "head-object", "--bucket", "mp-bucket", "--key", "big.bin"])).stdout) as { ContentLength: number; ETag: string };
    assert.equal(head.ContentLength, 50 * MiB);
    assert.equal(head.ETag, done.ETag);
    const out = path.join(dir, "mp.back");
    await aws(["s3api", "get-object", "--bucket", "mp-bucket", "--key", "big.bin", out]);
    assert.ok((await readFile(out)).equals(data));
  });

  test("rclone: copy a tree up, check it, copy it back, byte-identical", async () => {
    needRclone();
    const src = path.join(dir, "rsrc");
    await mkdir(path.join(src, "nested"), { recursive: true });
    await writeFile(path.join(src, "big.bin"), randomBytes(12 * MiB));
    for (let i = 0; i < 10; i++) await writeFile(path.join(src, "nested", `n${i}.txt`), randomBytes(1000 + i));
    await rclone(["mkdir", "t:rclone-bucket"]);
    await rclone(["copy", src, "t:rclone-bucket/data"]);
    await rclone(["check", src, "t:rclone-bucket/data"]);
    const back = path.join(dir, "rback");
    await rclone(["copy", "t:rclone-bucket/data", back]);
    await run("diff", ["-r", src, back]);
    await rclone(["purge", "t:rclone-bucket"]);
  });

  test("wrong secret → 403 SignatureDoesNotMatch; unknown key → 403 InvalidAccessKeyId; expired presigned URL → 403", async () => {
    needAws();
    const wrong = new s3.S3Client({ endpoint, region: "us-east-1", forcePathStyle: true, maxAttempts: 1, credentials: { accessKeyId: ACCESS, secretAccessKey: "wrong" } });
    await assert.rejects(wrong.send(new s3.ListBucketsCommand({})), (e: { name: string; $metadata: { httpStatusCode: number } }) => e.name === "SignatureDoesNotMatch" && e.$metadata.httpStatusCode === 403);
    wrong.destroy();
    const unknown = new s3.S3Client({ endpoint, region: "us-east-1", forcePathStyle: true, maxAttempts: 1, credentials: { accessKeyId: "AKIANOTAKEY000000000", secretAccessKey: "x" } });
    await assert.rejects(unknown.send(new s3.ListBucketsCommand({})), (e: { name: string; $metadata: { httpStatusCode: number } }) => e.name === "InvalidAccessKeyId" && e.$metadata.httpStatusCode === 403);
    unknown.destroy();
    await sdk.send(new s3.CreateBucketCommand({ Bucket: "presign-bucket" }));
    await sdk.send(new s3.PutObjectCommand({ Bucket: "presign-bucket", Key: "k", Body: "presigned" }));
    const url = (await aws(["s3", "presign", "s3://presign-bucket/k", "--expires-in", "4"])).stdout.trim();
    const first = await fetch(url);
    assert.equal(first.status, 200);
    assert.equal(await first.text(), "presigned");
    await new Promise((r) => setTimeout(r, 5200));
    const late = await fetch(url);
    assert.equal(late.status, 403);
    assert.match(await late.text(), /<Code>AccessDenied<\/Code>.*Request has expired/s);
  });

  test("bad input gets its S3 error and the agent stays up", async () => {
    const agent = cluster.agents[0]!;
    const sock = (payload: string, waitMs = 2000) => new Promise<string>((resolve) => {
      const s = net.connect(7480, agent.bind);
      let got = "";
      const t = setTimeout(() => { s.destroy(); resolve(got); }, waitMs);
      s.on("data", (d) => { got += d.toString("latin1"); });
      s.on("close", () => { clearTimeout(t); resolve(got); });
      s.on("error", () => { clearTimeout(t); resolve(got); });
      s.on("connect", () => s.write(payload));
    });
    const big = await sock(`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`);
    assert.match(big, /^HTTP\/1\.1 431 [\s\S]*<Code>RequestHeaderSectionTooLarge<\/Code>/);
    const garbage = await sock("NOT HTTP AT ALL\r\n\r\n");
    assert.match(garbage, /^HTTP\/1\.1 400 /);
    const anon = await fetch(`${endpoint}/`);
    assert.equal(anon.status, 403);
    assert.ok(anon.headers.get("x-amz-request-id"));
    await sdk.send(new s3.CreateBucketCommand({ Bucket: "bad-input" }));
    await assert.rejects(sdk.send(new s3.CreateBucketCommand({ Bucket: "Not_Valid" })), (e: { name: string }) => e.name === "InvalidBucketName");
    await sdk.send(new s3.PutObjectCommand({ Bucket: "bad-input", Key: "ten", Body: "0123456789" }));
    await assert.rejects(sdk.send(new s3.GetObjectCommand({ Bucket: "bad-input", Key: "ten", Range: "bytes=50-60" })), (e: { name: string; $metadata: { httpStatusCode: number } }) => e.name === "InvalidRange" && e.$metadata.httpStatusCode === 416);
    const s = (await aws(["s3api", "list-buckets"])).stdout;
    assert.match(s, /bad-input/);
    assert.ok(agent.running, "the agent is still running");
    const metrics = await (await fetch(`${agent.httpUrl}/metrics`)).text();
    assert.match(metrics, /thoc_s3_requests_total\{operation="PutObject",status="200"\}/);
    assert.match(metrics, /thoc_s3_request_duration_seconds_bucket/);
  });
});
