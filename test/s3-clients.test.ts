/**
 * Real S3 clients against a real `thoc-node agent --dev` (the store, key
 * registry and S3 server as the objectstore subsystem wires them):
 * @aws-sdk/client-s3 with its default checksums (CRC32 header and aws-chunked
 * trailer, a 7 MiB body, a SHA-256 multipart upload), Debian's aws-cli (s3
 * cp/sync/ls/rm of a 50 MiB file and a tree with awkward names, s3api
 * multipart part by part with the exact "<md5 of md5s>-N" ETag), rclone
 * (forced multipart, check, byte-exact round trip), auth failures (wrong
 * secret, unknown key, presigned URLs fresh and expired), and bad input
 * answered with its S3 error while the agent stays up.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, createHmac, randomBytes, type Hash, type Hmac } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { promisify } from "node:util";
import * as s3 from "@aws-sdk/client-s3";
import { SignatureV4 } from "@smithy/signature-v4";
import { startCluster, type Cluster } from "./harness.js";
import { cliEnv } from "./s3-cli.js";

const run = promisify(execFile);
const ACCESS = "AKIATHOCCLIENTTEST01";
const SECRET = "clients-test-secret/0123456789+abcdefghij";
const REGION = "us-east-1";
const MiB = 1024 * 1024;
const AWS = "/usr/bin/aws";
// Real clients are the point of this file: a missing one fails the test (`.ci/run` installs them).
const needAws = () => assert.ok(existsSync(AWS) && existsSync("/usr/bin/python3"), "Debian awscli is not installed: apt-get install awscli");
const needRclone = () => assert.ok(existsSync("/usr/bin/rclone"), "Debian rclone is not installed: apt-get install rclone");
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const md5 = (b: Uint8Array) => createHash("md5").update(b);

/** The hash constructor SignatureV4 wants, over node:crypto. */
class Sha256 {
  private h: Hash | Hmac;
  constructor(private readonly secret?: string | Uint8Array) { this.h = this.make(); }
  private make() { return this.secret ? createHmac("sha256", this.secret) : createHash("sha256"); }
  update(d: string | Uint8Array) { this.h.update(d); }
  async digest() { return new Uint8Array(this.h.digest()); }
  reset() { this.h = this.make(); }
}


describe("real S3 clients against a --dev agent", () => {
  let cluster: Cluster;
  let endpoint: string;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let sdk: s3.S3Client;
  const client = (extra: Partial<s3.S3ClientConfig> = {}) => new s3.S3Client({
    endpoint, region: REGION, forcePathStyle: true, maxAttempts: 1, credentials: { accessKeyId: ACCESS, secretAccessKey: SECRET }, ...extra,
  });
  const aws = async (args: string[], timeout = 120_000) => {
    const quiet = args[0] === "s3" && ["cp", "sync", "rm", "mv"].includes(args[1]!) ? ["--only-show-errors"] : [];
    return (await run(AWS, ["--endpoint-url", endpoint, ...args, ...quiet], { env, timeout, maxBuffer: 64 * MiB })).stdout;
  };
  const rclone = (args: string[]) => run("/usr/bin/rclone", ["-q", ...args, "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M"], { env, timeout: 120_000 });

  before(async () => {
    cluster = await startCluster(1, { env: { THOC_S3_ACCESS_KEY: ACCESS, THOC_S3_SECRET_KEY: SECRET } });
    endpoint = cluster.agents[0]!.s3Url;
    env = cliEnv(endpoint, ACCESS, SECRET, REGION);
    dir = await mkdtemp(path.join(tmpdir(), "thoc-s3-clients-"));
    sdk = client();
  });
  after(async () => {
    sdk?.destroy();
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("@aws-sdk/client-s3: CRC32 header and aws-chunked trailer, 7 MiB body, SHA-256 multipart, list, delete", async () => {
    await sdk.send(new s3.CreateBucketCommand({ Bucket: "sdk-bucket" }));
    const data = randomBytes(200_000);
    const put = await sdk.send(new s3.PutObjectCommand({ Bucket: "sdk-bucket", Key: "dir/obj.bin", Body: data, Metadata: { k: "v" } }));
    assert.equal(put.ETag, `"${md5(data).digest("hex")}"`);
    assert.ok(put.ChecksumCRC32, "the SDK's default CRC32 checksum was stored and echoed");
    await sdk.send(new s3.PutObjectCommand({ Bucket: "sdk-bucket", Key: "dir/stream.bin", Body: Readable.from([data]), ContentLength: data.length }));
    const g = await sdk.send(new s3.GetObjectCommand({ Bucket: "sdk-bucket", Key: "dir/stream.bin", ChecksumMode: "ENABLED" }));
    assert.ok(Buffer.from(await g.Body!.transformToByteArray()).equals(data));
    assert.equal(g.ChecksumCRC32, put.ChecksumCRC32);
    const big = randomBytes(7 * MiB);
    await sdk.send(new s3.PutObjectCommand({ Bucket: "sdk-bucket", Key: "dir/big", Body: big }));
    assert.equal(sha(await (await sdk.send(new s3.GetObjectCommand({ Bucket: "sdk-bucket", Key: "dir/big" }))).Body!.transformToByteArray()), sha(big));

    const up = await sdk.send(new s3.CreateMultipartUploadCommand({ Bucket: "sdk-bucket", Key: "mp", ChecksumAlgorithm: "SHA256" }));
    const parts = [randomBytes(5 * MiB), randomBytes(1234)];
    const etags = [];
    for (let i = 0; i < parts.length; i++) {
      const r = await sdk.send(new s3.UploadPartCommand({ Bucket: "sdk-bucket", Key: "mp", UploadId: up.UploadId, PartNumber: i + 1, Body: parts[i], ChecksumAlgorithm: "SHA256" }));
      etags.push({ PartNumber: i + 1, ETag: r.ETag, ChecksumSHA256: r.ChecksumSHA256 });
    }
    const done = await sdk.send(new s3.CompleteMultipartUploadCommand({ Bucket: "sdk-bucket", Key: "mp", UploadId: up.UploadId, MultipartUpload: { Parts: etags } }));
    assert.match(done.ETag ?? "", /-2"$/);
    assert.equal(sha(await (await sdk.send(new s3.GetObjectCommand({ Bucket: "sdk-bucket", Key: "mp" }))).Body!.transformToByteArray()), sha(Buffer.concat(parts)));

    const l = await sdk.send(new s3.ListObjectsV2Command({ Bucket: "sdk-bucket", Prefix: "dir/" }));
    assert.deepEqual(l.Contents!.map((o) => o.Key), ["dir/big", "dir/obj.bin", "dir/stream.bin"]);
    const rolled = await sdk.send(new s3.ListObjectsV2Command({ Bucket: "sdk-bucket", Delimiter: "/" }));
    assert.deepEqual(rolled.CommonPrefixes?.map((p) => p.Prefix), ["dir/"]);
    assert.deepEqual(rolled.Contents?.map((o) => o.Key), ["mp"]);
    await sdk.send(new s3.DeleteObjectsCommand({ Bucket: "sdk-bucket", Delete: { Objects: ["dir/obj.bin", "dir/stream.bin", "dir/big", "mp"].map((Key) => ({ Key })) } }));
    await sdk.send(new s3.DeleteBucketCommand({ Bucket: "sdk-bucket" }));
  });

  test("aws-cli s3: mb, cp of 50 MiB (multipart) both ways, sync of a tree with awkward names, ls, rm, rb", async () => {
    needAws();
    const big = path.join(dir, "big50.bin");
    await writeFile(big, randomBytes(50 * MiB));
    await aws(["s3", "mb", "s3://cli-bucket"]);
    await aws(["s3", "cp", big, "s3://cli-bucket/big50.bin"]);
    assert.match(await aws(["s3", "ls", "s3://cli-bucket/"]), /52428800 big50\.bin/);
    await aws(["s3", "cp", "s3://cli-bucket/big50.bin", path.join(dir, "big50.back")]);
    assert.ok((await readFile(big)).equals(await readFile(path.join(dir, "big50.back"))));

    const tree = path.join(dir, "tree");
    await mkdir(path.join(tree, "sub dir"), { recursive: true });
    for (let i = 0; i < 5; i++) await writeFile(path.join(tree, `f${i}.txt`), `file ${i}\n`);
    await writeFile(path.join(tree, "sub dir", "a+b é.txt"), "unicode\n");
    await writeFile(path.join(tree, "sub dir", "c.bin"), randomBytes(9 * MiB));
    await aws(["s3", "sync", tree, "s3://cli-bucket/tree/"]);
    const ls = await aws(["s3", "ls", "--recursive", "s3://cli-bucket/tree/"]);
    assert.equal(ls.trim().split("\n").length, 7, ls);
    assert.match(ls, /tree\/sub dir\/a\+b é\.txt/);
    assert.equal((await aws(["s3", "sync", tree, "s3://cli-bucket/tree/"])).trim(), "", "a second sync uploads nothing");
    assert.equal((await aws(["s3", "sync", "--dryrun", tree, "s3://cli-bucket/tree/"])).trim(), "", "nothing left to sync");
    const back = path.join(dir, "tree.back");
    await aws(["s3", "sync", "s3://cli-bucket/tree/", back]);
    await run("diff", ["-r", tree, back]);
    await aws(["s3", "rm", "--recursive", "s3://cli-bucket/"]);
    assert.equal((await aws(["s3", "ls", "--recursive", "s3://cli-bucket/"])).trim(), "");
    await aws(["s3", "rb", "s3://cli-bucket"]);
  });

  test("aws-cli s3api: multipart part by part (20+20+10 MiB), list-parts, list-multipart-uploads, ETag '<md5 of md5s>-3'", async () => {
    needAws();
    const data = randomBytes(50 * MiB);
    await aws(["s3api", "create-bucket", "--bucket", "mp-bucket"]);
    const created = JSON.parse(await aws(["s3api", "create-multipart-upload", "--bucket", "mp-bucket", "--key", "big.bin"])) as { UploadId: string };
    const cuts = [0, 20 * MiB, 40 * MiB, 50 * MiB];
    const parts: { PartNumber: number; ETag: string }[] = [];
    const md5s: Buffer[] = [];
    for (let i = 0; i < 3; i++) {
      const part = data.subarray(cuts[i], cuts[i + 1]);
      const file = path.join(dir, `part${i}`);
      await writeFile(file, part);
      const r = JSON.parse(await aws(["s3api", "upload-part", "--bucket", "mp-bucket", "--key", "big.bin", "--part-number", String(i + 1), "--upload-id", created.UploadId, "--body", file])) as { ETag: string };
      parts.push({ PartNumber: i + 1, ETag: r.ETag });
      md5s.push(md5(part).digest());
    }
    const listed = JSON.parse(await aws(["s3api", "list-parts", "--bucket", "mp-bucket", "--key", "big.bin", "--upload-id", created.UploadId])) as { Parts: { Size: number }[] };
    assert.deepEqual(listed.Parts.map((p) => p.Size), [20 * MiB, 20 * MiB, 10 * MiB]);
    const uploads = JSON.parse(await aws(["s3api", "list-multipart-uploads", "--bucket", "mp-bucket"])) as { Uploads: { Key: string }[] };
    assert.deepEqual(uploads.Uploads.map((u) => u.Key), ["big.bin"]);
    const spec = path.join(dir, "parts.json");
    await writeFile(spec, JSON.stringify({ Parts: parts }));
    const done = JSON.parse(await aws(["s3api", "complete-multipart-upload", "--bucket", "mp-bucket", "--key", "big.bin", "--upload-id", created.UploadId, "--multipart-upload", `file://${spec}`])) as { ETag: string };
    assert.equal(done.ETag, `"${md5(Buffer.concat(md5s)).digest("hex")}-3"`);
    const head = JSON.parse(await aws(["s3api", "head-object", "--bucket", "mp-bucket", "--key", "big.bin"])) as { ContentLength: number; ETag: string };
    assert.equal(head.ContentLength, 50 * MiB);
    assert.equal(head.ETag, done.ETag);
    const out = path.join(dir, "mp.back");
    await aws(["s3api", "get-object", "--bucket", "mp-bucket", "--key", "big.bin", out]);
    assert.ok((await readFile(out)).equals(data));
    await aws(["s3api", "put-object", "--bucket", "mp-bucket", "--key", "tree/a.txt", "--body", spec]);
    await aws(["s3api", "put-object", "--bucket", "mp-bucket", "--key", "tree/sub/b.txt", "--body", spec]);
    const l2 = JSON.parse(await aws(["s3api", "list-objects-v2", "--bucket", "mp-bucket", "--prefix", "tree/", "--delimiter", "/"])) as { Contents: { Key: string }[]; CommonPrefixes: { Prefix: string }[] };
    assert.deepEqual(l2.Contents.map((o) => o.Key), ["tree/a.txt"]);
    assert.deepEqual(l2.CommonPrefixes.map((p) => p.Prefix), ["tree/sub/"]);
  });

  test("rclone: copy a tree up (multipart forced), check, copy it back byte-exact, lsf, purge", async () => {
    needRclone();
    const src = path.join(dir, "rsrc");
    await mkdir(path.join(src, "deep", "er"), { recursive: true });
    const files: [string, number][] = [["one.txt", 5], ["deep/two.bin", 100_000], ["deep/er/three.bin", 12 * MiB], ["empty", 0]];
    for (const [n, size] of files) await writeFile(path.join(src, n), randomBytes(size));
    for (let i = 0; i < 10; i++) await writeFile(path.join(src, "deep", `n${i}.txt`), randomBytes(1000 + i));
    await rclone(["mkdir", "t:rclone-bucket"]);
    await rclone(["copy", src, "t:rclone-bucket/data"]);
    await rclone(["check", src, "t:rclone-bucket/data"]); // exits non-zero on any difference
    const back = path.join(dir, "rback");
    await rclone(["copy", "t:rclone-bucket/data", back]);
    await run("diff", ["-r", src, back]);
    for (const [n] of files) assert.equal(sha(await readFile(path.join(back, n))), sha(await readFile(path.join(src, n))), n);
    const ls = (await rclone(["lsf", "-R", "t:rclone-bucket/data"])).stdout.trim().split("\n");
    for (const n of ["deep/", "deep/er/", "deep/er/three.bin", "deep/two.bin", "empty", "one.txt", "deep/n9.txt"]) assert.ok(ls.includes(n), n);
    await rclone(["purge", "t:rclone-bucket"]);
  });

  test("wrong secret → 403 SignatureDoesNotMatch; unknown key → 403 InvalidAccessKeyId; presigned URLs: fresh works, expired is 403", async () => {
    needAws();
    const is = (name: string) => (e: { name?: string; $metadata?: { httpStatusCode?: number } }) => {
      assert.equal(e.$metadata?.httpStatusCode, 403);
      assert.equal(e.name, name);
      return true;
    };
    const wrong = client({ credentials: { accessKeyId: ACCESS, secretAccessKey: "not-the-secret-at-all-0000000000000000000" } });
    const unknown = client({ credentials: { accessKeyId: "AKIANOTAKEY000000000", secretAccessKey: SECRET } });
    try {
      await assert.rejects(wrong.send(new s3.ListBucketsCommand({})), is("SignatureDoesNotMatch"));
      await assert.rejects(wrong.send(new s3.ListObjectsV2Command({ Bucket: "presign-bucket" })), is("SignatureDoesNotMatch"));
      await assert.rejects(unknown.send(new s3.ListBucketsCommand({})), is("InvalidAccessKeyId"));
      await assert.rejects(unknown.send(new s3.ListObjectsV2Command({ Bucket: "presign-bucket" })), is("InvalidAccessKeyId"));
    } finally {
      wrong.destroy();
      unknown.destroy();
    }
    await sdk.send(new s3.CreateBucketCommand({ Bucket: "presign-bucket" }));
    await sdk.send(new s3.PutObjectCommand({ Bucket: "presign-bucket", Key: "k", Body: "presigned" }));
    // aws-cli's own presigning.
    const url = (await aws(["s3", "presign", "s3://presign-bucket/k", "--expires-in", "300"])).trim();
    const first = await fetch(url);
    assert.equal(first.status, 200);
    assert.equal(await first.text(), "presigned");
    // The SDK's signer: a fresh URL works, one signed ten minutes ago for 60 s has expired.
    const signer = new SignatureV4({ service: "s3", region: REGION, credentials: { accessKeyId: ACCESS, secretAccessKey: SECRET }, sha256: Sha256 as never, uriEscapePath: false });
    const u = new URL(`${endpoint}/presign-bucket/k`);
    const request = { method: "GET", protocol: "http:", hostname: u.hostname, port: Number(u.port), path: u.pathname, headers: { host: u.host, "x-amz-content-sha256": "UNSIGNED-PAYLOAD" }, query: {} };
    const toUrl = (r: { path: string; query?: Record<string, string | string[] | null> }) => {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(r.query ?? {})) if (typeof v === "string") q.set(k, v);
      return `${endpoint}${r.path}?${q.toString()}`;
    };
    const fresh = await fetch(toUrl(await signer.presign(request, { expiresIn: 300 })));
    assert.equal(fresh.status, 200);
    assert.equal(await fresh.text(), "presigned");
    const late = await fetch(toUrl(await signer.presign(request, { expiresIn: 60, signingDate: new Date(Date.now() - 10 * 60_000) })));
    assert.equal(late.status, 403);
    assert.match(await late.text(), /<Code>AccessDenied<\/Code>.*Request has expired/s);
  });

  test("bad input gets its S3 error and the agent stays up", async () => {
    needAws();
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
    assert.match(await aws(["s3api", "list-buckets"]), /bad-input/);
    assert.ok(agent.running, "the agent is still running");
    const metrics = await (await fetch(`${agent.httpUrl}/metrics`)).text();
    assert.match(metrics, /thoc_s3_requests_total\{operation="PutObject",status="200"\}/);
    assert.match(metrics, /thoc_s3_request_duration_seconds_bucket/);
  });
});
