/**
 * Real S3 clients against a real `--dev` agent, aimed at the durable local
 * blob store: @aws-sdk/client-s3 with its default checksums and a SHA-256
 * multipart upload, Debian's aws CLI (s3 and s3api, a 50 MiB file uploaded by
 * cp and part by part), rclone with forced multipart, and the auth failures
 * (wrong secret, unknown key, expired presigned URL). test/s3-clients.test.ts
 * covers the protocol side with the same clients.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, createHmac, randomBytes, type Hash, type Hmac } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import {
  CompleteMultipartUploadCommand, CreateBucketCommand, CreateMultipartUploadCommand, DeleteObjectCommand,
  GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client, UploadPartCommand, type S3ClientConfig,
} from "@aws-sdk/client-s3";
import { SignatureV4 } from "@smithy/signature-v4";
import { startCluster, type Cluster } from "./harness.js";

const run = promisify(execFile);
const ACCESS = "THOCCLIENTTEST000001";
const SECRET = "client-test-secret/0123456789+abcdefghij";
const REGION = "us-east-1";
let cluster: Cluster;
let endpoint: string;
let work: string;

/** The hash constructor SignatureV4 wants, over node:crypto. */
class Sha256 {
  private h: Hash | Hmac;
  constructor(private readonly secret?: string | Uint8Array) { this.h = this.make(); }
  private make() { return this.secret ? createHmac("sha256", this.secret) : createHash("sha256"); }
  update(d: string | Uint8Array) { this.h.update(d); }
  async digest() { return new Uint8Array(this.h.digest()); }
  reset() { this.h = this.make(); }
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const sdk = (extra: Partial<S3ClientConfig> = {}) => new S3Client({
  endpoint, region: REGION, forcePathStyle: true, maxAttempts: 1, credentials: { accessKeyId: ACCESS, secretAccessKey: SECRET }, ...extra,
});

before(async () => {
  cluster = await startCluster(1, { env: { THOC_S3_ACCESS_KEY: ACCESS, THOC_S3_SECRET_KEY: SECRET } });
  endpoint = cluster.agents[0]!.s3Url;
  work = await mkdtemp(path.join(tmpdir(), "thoc-s3clients-"));
});
after(async () => {
  await cluster?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

test("@aws-sdk/client-s3 (default checksums): put, get, list, SHA-256 multipart, delete", async () => {
  const c = sdk();
  try {
    await c.send(new CreateBucketCommand({ Bucket: "sdk" }));
    const small = randomBytes(1000);
    const put = await c.send(new PutObjectCommand({ Bucket: "sdk", Key: "dir/small", Body: small }));
    assert.ok(put.ChecksumCRC32, "the SDK's default CRC32 checksum was stored and echoed");
    const got = await c.send(new GetObjectCommand({ Bucket: "sdk", Key: "dir/small", ChecksumMode: "ENABLED" }));
    assert.equal(sha(await got.Body!.transformToByteArray()), sha(small));
    const big = randomBytes(7 * 1024 * 1024);
    await c.send(new PutObjectCommand({ Bucket: "sdk", Key: "dir/big", Body: big }));
    assert.equal(sha(await (await c.send(new GetObjectCommand({ Bucket: "sdk", Key: "dir/big" }))).Body!.transformToByteArray()), sha(big));

    const up = await c.send(new CreateMultipartUploadCommand({ Bucket: "sdk", Key: "mp", ChecksumAlgorithm: "SHA256" }));
    const parts = [randomBytes(5 * 1024 * 1024), randomBytes(1234)];
    const etags = [];
    for (let i = 0; i < parts.length; i++) {
      const r = await c.send(new UploadPartCommand({ Bucket: "sdk", Key: "mp", UploadId: up.UploadId, PartNumber: i + 1, Body: parts[i], ChecksumAlgorithm: "SHA256" }));
      etags.push({ PartNumber: i + 1, ETag: r.ETag, ChecksumSHA256: r.ChecksumSHA256 });
    }
    const done = await c.send(new CompleteMultipartUploadCommand({ Bucket: "sdk", Key: "mp", UploadId: up.UploadId, MultipartUpload: { Parts: etags } }));
    assert.match(done.ETag ?? "", /-2"$/);
    const whole = Buffer.concat(parts);
    assert.equal(sha(await (await c.send(new GetObjectCommand({ Bucket: "sdk", Key: "mp" }))).Body!.transformToByteArray()), sha(whole));

    const list = await c.send(new ListObjectsV2Command({ Bucket: "sdk", Delimiter: "/" }));
    assert.deepEqual(list.CommonPrefixes?.map((p) => p.Prefix), ["dir/"]);
    assert.deepEqual(list.Contents?.map((o) => o.Key), ["mp"]);
    await c.send(new DeleteObjectCommand({ Bucket: "sdk", Key: "mp" }));
    assert.equal((await c.send(new ListObjectsV2Command({ Bucket: "sdk" }))).KeyCount, 2);
  } finally {
    c.destroy();
  }
});

test("wrong secret → 403 SignatureDoesNotMatch; unknown key → 403 InvalidAccessKeyId", async () => {
  const bad = sdk({ credentials: { accessKeyId: ACCESS, secretAccessKey: "not-the-secret-at-all-0000000000000000000" } });
  const unknown = sdk({ credentials: { accessKeyId: "THOCNOSUCHKEY0000000", secretAccessKey: SECRET } });
  try {
    const is = (name: string) => (e: { name?: string; $metadata?: { httpStatusCode?: number } }) => {
      assert.equal(e.$metadata?.httpStatusCode, 403);
      assert.equal(e.name, name);
      return true;
    };
    await assert.rejects(bad.send(new ListObjectsV2Command({ Bucket: "sdk" })), is("SignatureDoesNotMatch"));
    await assert.rejects(unknown.send(new ListObjectsV2Command({ Bucket: "sdk" })), is("InvalidAccessKeyId"));
  } finally {
    bad.destroy();
    unknown.destroy();
  }
});

test("presigned GET URLs: a fresh one works, an expired one is 403", async () => {
  const c = sdk();
  await c.send(new CreateBucketCommand({ Bucket: "presign" }));
  await c.send(new PutObjectCommand({ Bucket: "presign", Key: "file.txt", Body: "presigned content" }));
  c.destroy();
  const signer = new SignatureV4({ service: "s3", region: REGION, credentials: { accessKeyId: ACCESS, secretAccessKey: SECRET }, sha256: Sha256 as never, uriEscapePath: false });
  const u = new URL(`${endpoint}/presign/file.txt`);
  const request = { method: "GET", protocol: "http:", hostname: u.hostname, port: Number(u.port), path: u.pathname, headers: { host: u.host, "x-amz-content-sha256": "UNSIGNED-PAYLOAD" }, query: {} };
  const toUrl = (r: { path: string; query?: Record<string, string | string[] | null> }) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(r.query ?? {})) if (typeof v === "string") q.set(k, v);
    return `${endpoint}${r.path}?${q.toString()}`;
  };
  const fresh = await fetch(toUrl(await signer.presign(request, { expiresIn: 300 })));
  const text = await fresh.text();
  assert.equal(fresh.status, 200, text);
  assert.equal(text, "presigned content");
  const old = await signer.presign(request, { expiresIn: 60, signingDate: new Date(Date.now() - 10 * 60_000) });
  const expired = await fetch(toUrl(old));
  assert.equal(expired.status, 403);
  assert.match(await expired.text(), /AccessDenied|expired/i);
});

async function aws(args: string[]): Promise<string> {
  const env = { ...process.env, AWS_ACCESS_KEY_ID: ACCESS, AWS_SECRET_ACCESS_KEY: SECRET, AWS_DEFAULT_REGION: REGION, AWS_CONFIG_FILE: "/dev/null", AWS_SHARED_CREDENTIALS_FILE: "/dev/null", AWS_PAGER: "" };
  const r = await run("/usr/bin/aws", ["--endpoint-url", endpoint, ...args], { env, maxBuffer: 1 << 24, timeout: 120_000 });
  return r.stdout;
}

test("Debian aws CLI: s3 mb/cp/ls/sync/rm and s3api with a manual multipart upload of a 50 MiB file", async () => {
  const big = randomBytes(50 * 1024 * 1024);
  const f = path.join(work, "big.bin");
  await writeFile(f, big);
  await aws(["s3", "mb", "s3://awscli"]);
  await aws(["s3", "cp", "--only-show-errors", f, "s3://awscli/big.bin"]); // multipart (8 MiB parts)
  assert.match(await aws(["s3", "ls", "s3://awscli/"]), /52428800 big\.bin/);
  const back = path.join(work, "big.back");
  await aws(["s3", "cp", "--only-show-errors", "s3://awscli/big.bin", back]);
  assert.equal(sha(await readFile(back)), sha(big));

  const tree = path.join(work, "tree");
  await mkdir(path.join(tree, "sub"), { recursive: true });
  for (const [n, size] of [["a.txt", 10], ["sub/b.bin", 200_000], ["sub/c.bin", 9 << 20]] as const) await writeFile(path.join(tree, n), randomBytes(size));
  await aws(["s3", "sync", "--only-show-errors", tree, "s3://awscli/tree"]);
  const ls = await aws(["s3", "ls", "--recursive", "s3://awscli/tree/"]);
  assert.deepEqual(ls.trim().split("\n").map((l) => l.trim().split(/\s+/).pop()), ["tree/a.txt", "tree/sub/b.bin", "tree/sub/c.bin"]);
  const back2 = path.join(work, "tree.back");
  await aws(["s3", "sync", "--only-show-errors", "s3://awscli/tree", back2]);
  for (const n of ["a.txt", "sub/b.bin", "sub/c.bin"]) assert.equal(sha(await readFile(path.join(back2, n))), sha(await readFile(path.join(tree, n))));
  assert.equal((await aws(["s3", "sync", "--dryrun", tree, "s3://awscli/tree"])).trim(), "", "nothing left to sync");

  // s3api: the multipart calls one by one (30 MiB + 20 MiB parts).
  const up = JSON.parse(await aws(["s3api", "create-multipart-upload", "--bucket", "awscli", "--key", "manual.bin"])) as { UploadId: string };
  const parts = [big.subarray(0, 30 << 20), big.subarray(30 << 20)];
  const done = [];
  for (let i = 0; i < parts.length; i++) {
    const pf = path.join(work, `part${i}`);
    await writeFile(pf, parts[i]!);
    const r = JSON.parse(await aws(["s3api", "upload-part", "--bucket", "awscli", "--key", "manual.bin", "--upload-id", up.UploadId, "--part-number", String(i + 1), "--body", pf])) as { ETag: string };
    done.push({ PartNumber: i + 1, ETag: r.ETag });
  }
  const lp = JSON.parse(await aws(["s3api", "list-parts", "--bucket", "awscli", "--key", "manual.bin", "--upload-id", up.UploadId])) as { Parts: { Size: number }[] };
  assert.deepEqual(lp.Parts.map((p) => p.Size), [30 << 20, 20 << 20]);
  const uploads = JSON.parse(await aws(["s3api", "list-multipart-uploads", "--bucket", "awscli"])) as { Uploads: { Key: string }[] };
  assert.deepEqual(uploads.Uploads.map((u) => u.Key), ["manual.bin"]);
  const fin = JSON.parse(await aws(["s3api", "complete-multipart-upload", "--bucket", "awscli", "--key", "manual.bin", "--upload-id", up.UploadId,
    "--multipart-upload", JSON.stringify({ Parts: done })])) as { ETag: string };
  assert.match(fin.ETag, /-2"$/);
  const head = JSON.parse(await aws(["s3api", "head-object", "--bucket", "awscli", "--key", "manual.bin"])) as { ContentLength: number };
  assert.equal(head.ContentLength, big.length);
  const out = path.join(work, "manual.back");
  await aws(["s3api", "get-object", "--bucket", "awscli", "--key", "manual.bin", out]);
  assert.equal(sha(await readFile(out)), sha(big));
  const l2 = JSON.parse(await aws(["s3api", "list-objects-v2", "--bucket", "awscli", "--prefix", "tree/", "--delimiter", "/"])) as { Contents: { Key: string }[]; CommonPrefixes: { Prefix: string }[] };
  assert.deepEqual(l2.Contents.map((o) => o.Key), ["tree/a.txt"]);
  assert.deepEqual(l2.CommonPrefixes.map((p) => p.Prefix), ["tree/sub/"]);

  await aws(["s3", "rm", "--only-show-errors", "--recursive", "s3://awscli/"]);
  assert.equal((await aws(["s3", "ls", "--recursive", "s3://awscli/"])).trim(), "");
  await aws(["s3", "rb", "s3://awscli"]);
});

test("Debian rclone: copy up, check, copy back byte-exact (multipart forced with small chunks)", async () => {
  const src = path.join(work, "rc-src");
  await mkdir(path.join(src, "deep", "er"), { recursive: true });
  const files: [string, number][] = [["one.txt", 5], ["deep/two.bin", 100_000], ["deep/er/three.bin", 12 << 20], ["empty", 0]];
  for (const [n, size] of files) await writeFile(path.join(src, n), randomBytes(size));
  const { AWS_CA_BUNDLE: _ca, ...base } = process.env; // rclone refuses a CA bundle on a plain-http endpoint
  const env = {
    ...base, RCLONE_CONFIG: "/dev/null",
    RCLONE_CONFIG_X_TYPE: "s3", RCLONE_CONFIG_X_PROVIDER: "Other", RCLONE_CONFIG_X_ENV_AUTH: "false",
    RCLONE_CONFIG_X_ACCESS_KEY_ID: ACCESS, RCLONE_CONFIG_X_SECRET_ACCESS_KEY: SECRET,
    RCLONE_CONFIG_X_ENDPOINT: endpoint, RCLONE_CONFIG_X_REGION: REGION, RCLONE_CONFIG_X_FORCE_PATH_STYLE: "true",
  };
  const rclone = (args: string[]) => run("/usr/bin/rclone", [...args, "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M"], { env, timeout: 120_000 });
  await rclone(["mkdir", "x:rclone"]);
  await rclone(["copy", src, "x:rclone/data"]);
  await rclone(["check", src, "x:rclone/data"]); // exits non-zero on any difference
  const back = path.join(work, "rc-back");
  await rclone(["copy", "x:rclone/data", back]);
  for (const [n] of files) assert.equal(sha(await readFile(path.join(back, n))), sha(await readFile(path.join(src, n))), n);
  const ls = await rclone(["lsf", "-R", "x:rclone/data"]);
  assert.deepEqual(ls.stdout.trim().split("\n").sort(), ["deep/", "deep/er/", "deep/er/three.bin", "deep/two.bin", "empty", "one.txt"]);
});
