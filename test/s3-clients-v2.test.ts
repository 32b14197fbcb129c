/**
 * Real clients that sign with AWS Signature Version 2, and browser-form
 * uploads (POST Object) from a real presigner, against a real `thoc-node
 * agent --dev`: aws-cli v1 (`aws` on PATH; its `s3 presign` is V2 by default;
 * its calls stay V4 whatever its config file says, see the test),
 * s3cmd --signature-v2 (plain and multipart puts), boto3 with
 * Config(signature_version="s3") (calls and presigned URLs) and its
 * generate_presigned_post (V2 and V4 policies) posted as a form with fetch();
 * and an agent with s3.sigV2=false refusing all of them with a message that
 * says to use SigV4.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { startCluster, type Cluster } from "./harness.js";

const run = promisify(execFile);
const ACCESS = "AKIATHOCV2CLIENTS001";
const SECRET = "v2-clients-secret/0123456789+abcdefghij";
const MiB = 1024 * 1024;
const PY = "/usr/bin/python3";
const S3CMD = "/usr/bin/s3cmd";
const md5 = (b: Uint8Array) => createHash("md5").update(b).digest("hex");

/** aws-cli v1 from PATH (Debian's awscli is v2, which signs only with V4); undefined when there is none. */
async function awsV1(): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    const p = path.join(dir, "aws");
    if (!existsSync(p)) continue;
    try {
      const v = await run(p, ["--version"], { timeout: 30_000 });
      if (/^aws-cli\/1\./.test(v.stdout + v.stderr)) return p;
    } catch { /* not a working aws */ }
  }
  return undefined;
}

function baseEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  // PYENV_* and friends let a pyenv shim of aws-cli v1 find its interpreter.
  for (const [k, v] of Object.entries(process.env)) if (["PATH", "HOME", "LANG", "TMPDIR"].includes(k) || k.startsWith("PYENV")) env[k] = v;
  return { ...env, AWS_ACCESS_KEY_ID: ACCESS, AWS_SECRET_ACCESS_KEY: SECRET, AWS_DEFAULT_REGION: "us-east-1", AWS_SHARED_CREDENTIALS_FILE: "/dev/null", AWS_PAGER: "" };
}

const BOTO = `
import json, sys, boto3
from botocore.config import Config
endpoint, op = sys.argv[1], sys.argv[2]
def client(sig):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="${ACCESS}", aws_secret_access_key="${SECRET}",
                        config=Config(signature_version=sig, s3={"addressing_style": "path"}))
if op == "calls":
    c = client("s3")
    c.create_bucket(Bucket="boto-v2")
    c.put_object(Bucket="boto-v2", Key="dir/a b+c.txt", Body=b"boto v2 body", ContentType="text/plain", Metadata={"who": "boto"})
    g = c.get_object(Bucket="boto-v2", Key="dir/a b+c.txt")
    assert g["Body"].read() == b"boto v2 body" and g["Metadata"]["who"] == "boto", g
    keys = [o["Key"] for o in c.list_objects(Bucket="boto-v2", Prefix="dir/")["Contents"]]
    url = c.generate_presigned_url("get_object", Params={"Bucket": "boto-v2", "Key": "dir/a b+c.txt"}, ExpiresIn=300)
    print(json.dumps({"keys": keys, "url": url}))
elif op == "post":
    c = client(sys.argv[3])
    p = c.generate_presigned_post("boto-v2", "forms/" + sys.argv[3] + "/${"${filename}"}", Fields={"success_action_status": "201"},
                                  Conditions=[{"success_action_status": "201"}, ["content-length-range", 1, 1048576]], ExpiresIn=300)
    print(json.dumps(p))
elif op == "ls":
    print(json.dumps([b["Name"] for b in client("s3").list_buckets()["Buckets"]]))
`;

describe("real SigV2 clients and POST Object against a --dev agent", () => {
  let cluster: Cluster;
  let endpoint: string;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let aws: string | undefined;
  let s3cmdCfg: string;
  const s3cmd = (cfg: string, args: string[]) => run(PY, [S3CMD, "-c", cfg, "--signature-v2", "--no-progress", ...args], { env, timeout: 120_000, maxBuffer: 16 * MiB });
  const boto = async (args: string[]) => JSON.parse((await run(PY, ["-c", BOTO, endpoint, ...args], { env, timeout: 120_000 })).stdout) as unknown;

  before(async () => {
    cluster = await startCluster(1, { env: { THOC_S3_ACCESS_KEY: ACCESS, THOC_S3_SECRET_KEY: SECRET } });
    endpoint = cluster.agents[0]!.s3Url;
    dir = await mkdtemp(path.join(tmpdir(), "thoc-s3-v2-"));
    env = baseEnv();
    aws = await awsV1();
    s3cmdCfg = await s3cmdConfig(dir, "s3cmd.cfg", endpoint);
  });
  after(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("aws-cli v1: s3 presign is V2 by default (fetched, then expired); cp/ls/rm beside it", async () => {
    assert.ok(aws, "aws-cli v1 is not on PATH: pip install awscli (Debian's awscli is v2, which has no SigV2)");
    const cfg = path.join(dir, "aws-v2.cfg");
    await writeFile(cfg, "[default]\ns3 =\n    signature_version = s3\n    addressing_style = path\n");
    const v2env = { ...env, AWS_CONFIG_FILE: cfg };
    const cli = async (args: string[], e = v2env) => (await run(aws!, ["--endpoint-url", endpoint, ...args], { env: e, timeout: 120_000, maxBuffer: 16 * MiB }));
    const data = randomBytes(3 * MiB);
    await writeFile(path.join(dir, "up.bin"), data);
    await cli(["s3", "mb", "s3://awsv1"]);
    // botocore 1.43 lets the endpoint ruleset's auth scheme (sigv4) win over the config file's s3.signature_version
    // for calls (only a Config object overrides it, as boto3 below does), so these are V4; presign is V2.
    await cli(["s3", "cp", path.join(dir, "up.bin"), "s3://awsv1/dir/up.bin", "--only-show-errors"]);
    await cli(["s3", "cp", "s3://awsv1/dir/up.bin", path.join(dir, "down.bin"), "--only-show-errors"]);
    assert.equal(md5(await readFile(path.join(dir, "down.bin"))), md5(data));
    assert.match((await cli(["s3", "ls", "s3://awsv1/dir/"])).stdout, /up\.bin/);

    const url = (await cli(["s3", "presign", "s3://awsv1/dir/up.bin", "--expires-in", "300"], { ...env, AWS_CONFIG_FILE: "/dev/null" })).stdout.trim();
    assert.match(url, /[?&]AWSAccessKeyId=.*&Signature=.*&Expires=\d+/, "aws-cli v1 presigns with V2 by default");
    const got = await fetch(url);
    assert.equal(got.status, 200);
    assert.equal(md5(new Uint8Array(await got.arrayBuffer())), md5(data));
    const soon = (await cli(["s3", "presign", "s3://awsv1/dir/up.bin", "--expires-in", "1"], { ...env, AWS_CONFIG_FILE: "/dev/null" })).stdout.trim();
    await new Promise((r) => setTimeout(r, 2100));
    const late = await fetch(soon);
    assert.equal(late.status, 403);
    assert.match(await late.text(), /<Code>AccessDenied<\/Code><Message>Request has expired/);
    await cli(["s3", "rm", "s3://awsv1/dir/up.bin", "--only-show-errors"]);
    await cli(["s3", "rb", "s3://awsv1"]);
  });

  test("s3cmd --signature-v2: mb, put (plain and multipart), get, ls, del, rb", async () => {
    assert.ok(existsSync(S3CMD), "s3cmd is not installed: apt-get install s3cmd");
    const small = randomBytes(100_000), big = randomBytes(12 * MiB);
    await writeFile(path.join(dir, "small.bin"), small);
    await writeFile(path.join(dir, "big.bin"), big);
    await s3cmd(s3cmdCfg, ["mb", "s3://s3cmd-v2"]);
    await s3cmd(s3cmdCfg, ["put", path.join(dir, "small.bin"), "s3://s3cmd-v2/a dir/small.bin"]);
    await s3cmd(s3cmdCfg, ["put", "--multipart-chunk-size-mb=5", path.join(dir, "big.bin"), "s3://s3cmd-v2/big.bin"]);
    const ls = (await s3cmd(s3cmdCfg, ["ls", "-r", "s3://s3cmd-v2"])).stdout;
    assert.match(ls, /s3:\/\/s3cmd-v2\/a dir\/small\.bin/);
    assert.match(ls, /s3:\/\/s3cmd-v2\/big\.bin/);
    await s3cmd(s3cmdCfg, ["get", "--force", "s3://s3cmd-v2/big.bin", path.join(dir, "big.out")]);
    assert.equal(md5(await readFile(path.join(dir, "big.out"))), md5(big));
    await s3cmd(s3cmdCfg, ["get", "--force", "s3://s3cmd-v2/a dir/small.bin", path.join(dir, "small.out")]);
    assert.equal(md5(await readFile(path.join(dir, "small.out"))), md5(small));
    await s3cmd(s3cmdCfg, ["del", "s3://s3cmd-v2/big.bin", "s3://s3cmd-v2/a dir/small.bin"]);
    await s3cmd(s3cmdCfg, ["rb", "s3://s3cmd-v2"]);
  });

  test("boto3 Config(signature_version='s3'): calls, a presigned URL; generate_presigned_post (V2 and V4) posted as a form", async () => {
    const r = await boto(["calls"]) as { keys: string[]; url: string };
    assert.deepEqual(r.keys, ["dir/a b+c.txt"]);
    assert.match(r.url, /AWSAccessKeyId=/);
    const g = await fetch(r.url);
    assert.equal(g.status, 200);
    assert.equal(await g.text(), "boto v2 body");
    for (const sig of ["s3", "s3v4"]) {
      const p = await boto(["post", sig]) as { url: string; fields: Record<string, string> };
      assert.ok(sig === "s3" ? "AWSAccessKeyId" in p.fields : "x-amz-signature" in p.fields, JSON.stringify(p.fields));
      const form = new FormData();
      for (const [k, v] of Object.entries(p.fields)) form.append(k, v);
      const data = randomBytes(50_000);
      form.append("file", new Blob([data]), "photo.jpg");
      const res = await fetch(p.url, { method: "POST", body: form });
      const body = await res.text();
      assert.equal(res.status, 201, body);
      assert.match(body, new RegExp(`<Key>forms/${sig}/photo.jpg</Key><ETag>&quot;${md5(data)}&quot;</ETag>`));
      const back = await fetch(`${endpoint}/boto-v2/forms/${sig}/photo.jpg`);
      assert.equal(back.status, 403, "the object is private (an anonymous GET is refused)");
    }
  });

  describe("with s3.sigV2=false", () => {
    let off: Cluster;
    let offEndpoint: string;
    before(async () => {
      off = await startCluster(1, { env: { THOC_S3_ACCESS_KEY: ACCESS, THOC_S3_SECRET_KEY: SECRET, THOC_S3_SIG_V2: "false" } });
      offEndpoint = off.agents[0]!.s3Url;
    });
    after(async () => { await off?.stop(); });

    test("aws-cli v1's V2 presigned URL and s3cmd --signature-v2 are refused, saying to use SigV4; boto3 with SigV4 still works", async () => {
      assert.ok(aws, "aws-cli v1 is not on PATH");
      const url = (await run(aws, ["--endpoint-url", offEndpoint, "s3", "presign", "s3://any/k"], { env: { ...env, AWS_CONFIG_FILE: "/dev/null" }, timeout: 60_000 })).stdout.trim();
      const r = await fetch(url);
      assert.equal(r.status, 400);
      assert.match(await r.text(), /<Code>InvalidRequest<\/Code><Message>AWS Signature Version 2 is turned off on this endpoint[^<]*Signature Version 4/);
      const cfg = await s3cmdConfig(dir, "s3cmd-off.cfg", offEndpoint);
      await assert.rejects(s3cmd(cfg, ["ls"]), (e: { stderr?: string; stdout?: string }) => {
        assert.match(`${e.stderr}${e.stdout}`, /Signature Version 2 is turned off|InvalidRequest/);
        return true;
      });
      const ok = JSON.parse((await run(PY, ["-c", BOTO.replace('client("s3").list_buckets', 'client("s3v4").list_buckets'), offEndpoint, "ls"], { env, timeout: 60_000 })).stdout) as string[];
      assert.ok(Array.isArray(ok), "SigV4 still works");
    });
  });
});

/** An s3cmd config for a path-style plaintext endpoint (host_bucket without %(bucket)s keeps s3cmd path-style). */
async function s3cmdConfig(dir: string, name: string, endpoint: string): Promise<string> {
  const host = new URL(endpoint).host;
  const file = path.join(dir, name);
  await writeFile(file, [
    "[default]", `access_key = ${ACCESS}`, `secret_key = ${SECRET}`, `host_base = ${host}`, `host_bucket = ${host}`,
    "use_https = False", "signature_v2 = True", "bucket_location = us-east-1", "check_ssl_certificate = False", "",
  ].join("\n"), { mode: 0o600 });
  return file;
}
