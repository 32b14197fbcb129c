/**
 * Access control through real clients against a real `thoc-node agent
 * --dev`: aws-cli v2's s3api put-bucket-policy / get-bucket-policy-status /
 * put-object --acl / put-object-acl, boto3's put_bucket_acl, and the
 * anonymous reads (plain fetch, no signature) they open.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { startCluster, type Cluster } from "./harness.js";

const run = promisify(execFile);
const ACCESS = "AKIATHOCACCESSTEST01";
const SECRET = "access-test-secret/0123456789+abcdefghij";
const AWS = "/usr/bin/aws", PY = "/usr/bin/python3";

describe("access control through aws-cli and boto3 against a --dev agent", () => {
  let cluster: Cluster;
  let endpoint: string;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  const aws = async (...args: string[]) => (await run(AWS, ["--endpoint-url", endpoint, ...args], { env, timeout: 60_000 })).stdout;

  before(async () => {
    assert.ok(existsSync(AWS) && existsSync(PY), "aws-cli and python3 (boto3) are needed: apt-get install awscli python3-boto3");
    cluster = await startCluster(1, { env: { THOC_S3_ACCESS_KEY: ACCESS, THOC_S3_SECRET_KEY: SECRET } });
    endpoint = cluster.agents[0]!.s3Url;
    dir = await mkdtemp(path.join(tmpdir(), "thoc-s3-access-"));
    env = {
      PATH: process.env.PATH, HOME: dir, AWS_ACCESS_KEY_ID: ACCESS, AWS_SECRET_ACCESS_KEY: SECRET, AWS_DEFAULT_REGION: "us-east-1",
      AWS_CONFIG_FILE: "/dev/null", AWS_SHARED_CREDENTIALS_FILE: "/dev/null", AWS_PAGER: "",
    };
  });
  after(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("aws s3api: put-object --acl public-read, put-bucket-policy, get-bucket-policy-status; anonymous fetch follows", async () => {
    await aws("s3api", "create-bucket", "--bucket", "cli-access");
    const file = path.join(dir, "body.txt");
    await writeFile(file, "hello anonymous");
    await aws("s3api", "put-object", "--bucket", "cli-access", "--key", "open.txt", "--body", file, "--acl", "public-read");
    await aws("s3api", "put-object", "--bucket", "cli-access", "--key", "shared/a.txt", "--body", file);
    await aws("s3api", "put-object", "--bucket", "cli-access", "--key", "closed.txt", "--body", file);
    const open = await fetch(`${endpoint}/cli-access/open.txt`);
    assert.equal(open.status, 200);
    assert.equal(await open.text(), "hello anonymous");
    assert.equal((await fetch(`${endpoint}/cli-access/closed.txt`)).status, 403);
    assert.equal((await fetch(`${endpoint}/cli-access/shared/a.txt`)).status, 403);

    const policy = JSON.stringify({ Version: "2012-10-17", Statement: [{ Sid: "Shared", Effect: "Allow", Principal: "*", Action: "s3:GetObject", Resource: "arn:aws:s3:::cli-access/shared/*" }] });
    await aws("s3api", "put-bucket-policy", "--bucket", "cli-access", "--policy", policy);
    const status = JSON.parse(await aws("s3api", "get-bucket-policy-status", "--bucket", "cli-access")) as { PolicyStatus: { IsPublic: boolean } };
    assert.equal(status.PolicyStatus.IsPublic, true);
    assert.equal(JSON.parse(await aws("s3api", "get-bucket-policy", "--bucket", "cli-access")).Policy, policy);
    assert.equal((await fetch(`${endpoint}/cli-access/shared/a.txt`)).status, 200);
    assert.equal((await fetch(`${endpoint}/cli-access/closed.txt`)).status, 403);
    // A policy this store cannot enforce is refused, and the CLI says why.
    await assert.rejects(aws("s3api", "put-bucket-policy", "--bucket", "cli-access", "--policy", policy.replace("s3:GetObject", "s3:GetObjectTorrent")),
      (e: { stderr: string }) => /MalformedPolicy/.test(e.stderr) && /Unsupported Action/.test(e.stderr));
    await aws("s3api", "put-public-access-block", "--bucket", "cli-access", "--public-access-block-configuration", "RestrictPublicBuckets=true");
    assert.equal((await fetch(`${endpoint}/cli-access/shared/a.txt`)).status, 403);
    await aws("s3api", "delete-public-access-block", "--bucket", "cli-access");
    await aws("s3api", "delete-bucket-policy", "--bucket", "cli-access");
    assert.equal((await fetch(`${endpoint}/cli-access/shared/a.txt`)).status, 403);
  });

  test("aws s3api put-object-acl --acl public-read opens an existing object", async () => {
    await aws("s3api", "create-bucket", "--bucket", "cli-objacl");
    const file = path.join(dir, "o.txt");
    await writeFile(file, "later public");
    await aws("s3api", "put-object", "--bucket", "cli-objacl", "--key", "o.txt", "--body", file);
    assert.equal((await fetch(`${endpoint}/cli-objacl/o.txt`)).status, 403);
    await aws("s3api", "put-object-acl", "--bucket", "cli-objacl", "--key", "o.txt", "--acl", "public-read");
    const r = await fetch(`${endpoint}/cli-objacl/o.txt`);
    assert.equal(r.status, 200);
    assert.equal(await r.text(), "later public");
  });

  test("boto3 put_bucket_acl public-read: anonymous listing opens; get_bucket_acl shows the AllUsers grant", async () => {
    const script = `
import boto3, json, sys
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
s3.create_bucket(Bucket="boto-access")
s3.put_object(Bucket="boto-access", Key="k", Body=b"v")
s3.put_bucket_acl(Bucket="boto-access", ACL="public-read")
acl = s3.get_bucket_acl(Bucket="boto-access")
print(json.dumps([[g["Grantee"]["Type"], g["Grantee"].get("URI", g["Grantee"].get("ID")), g["Permission"]] for g in acl["Grants"]]))
`;
    const out = (await run(PY, ["-c", script, endpoint], { env, timeout: 60_000 })).stdout;
    assert.deepEqual(JSON.parse(out), [["CanonicalUser", "root", "FULL_CONTROL"], ["Group", "http://acs.amazonaws.com/groups/global/AllUsers", "READ"]]);
    const list = await fetch(`${endpoint}/boto-access?list-type=2`);
    assert.equal(list.status, 200);
    assert.match(await list.text(), /<Key>k<\/Key>/);
    assert.equal((await fetch(`${endpoint}/boto-access/k`)).status, 403, "bucket READ lists; it does not read objects");
  });
});
