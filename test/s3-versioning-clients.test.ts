/**
 * Bucket versioning through real S3 clients against a real
 * `thoc-node agent --dev`: aws-cli v2 (Debian's /usr/bin/aws) and v1 (the
 * `aws` on PATH) s3api put-bucket-versioning / list-object-versions /
 * get-object --version-id / delete-object; boto3's list_object_versions
 * paginator; rclone's --s3-versions listing and --s3-version-at reads.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { startCluster, type Cluster } from "./harness.js";
import { cliEnv } from "./s3-cli.js";

const run = promisify(execFile);
const ACCESS = "AKIATHOCVERSIONS0001";
const SECRET = "versions-test-secret/0123456789+abcdefgh";
const REGION = "us-east-1";
const AWS2 = "/usr/bin/aws";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


interface Listed { Versions?: { Key: string; VersionId: string; IsLatest: boolean }[]; DeleteMarkers?: { Key: string; VersionId: string; IsLatest: boolean }[] }

describe("bucket versioning through real S3 clients against a --dev agent", () => {
  let cluster: Cluster;
  let endpoint: string;
  let env: NodeJS.ProcessEnv;
  let dir: string;

  before(async () => {
    cluster = await startCluster(1, { env: { THOC_S3_ACCESS_KEY: ACCESS, THOC_S3_SECRET_KEY: SECRET } });
    endpoint = cluster.agents[0]!.s3Url;
    env = cliEnv(endpoint, ACCESS, SECRET, REGION);
    dir = await mkdtemp(path.join(tmpdir(), "thoc-s3-versions-"));
  });
  after(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** The same versioning session through one aws-cli: enable, three writes, a delete marker, reads by version, undo. */
  async function awsCli(bin: string, bucket: string): Promise<void> {
    const aws = async (...args: string[]) => (await run(bin, ["--endpoint-url", endpoint, ...args], { env, timeout: 60_000 })).stdout;
    const json = async <T>(...args: string[]) => JSON.parse(await aws(...args, "--output", "json")) as T;
    await aws("s3api", "create-bucket", "--bucket", bucket);
    await aws("s3api", "put-bucket-versioning", "--bucket", bucket, "--versioning-configuration", "Status=Enabled");
    assert.equal((await json<{ Status?: string }>("s3api", "get-bucket-versioning", "--bucket", bucket)).Status, "Enabled");
    const ids: string[] = [];
    for (const content of ["first", "second", "third"]) {
      const src = path.join(dir, `${bucket}-${content}`);
      await writeFile(src, content);
      ids.push((await json<{ VersionId: string }>("s3api", "put-object", "--bucket", bucket, "--key", "doc.txt", "--body", src)).VersionId);
    }
    assert.equal(new Set(ids).size, 3);
    const l = await json<Listed>("s3api", "list-object-versions", "--bucket", bucket);
    assert.deepEqual(l.Versions!.map((v) => [v.VersionId, v.IsLatest]), [[ids[2], true], [ids[1], false], [ids[0], false]]);
    const out = path.join(dir, `${bucket}-out`);
    const got = await json<{ VersionId: string }>("s3api", "get-object", "--bucket", bucket, "--key", "doc.txt", "--version-id", ids[0]!, out);
    assert.equal(got.VersionId, ids[0]);
    assert.equal(await readFile(out, "utf8"), "first");
    const marker = await json<{ DeleteMarker: boolean; VersionId: string }>("s3api", "delete-object", "--bucket", bucket, "--key", "doc.txt");
    assert.equal(marker.DeleteMarker, true);
    await assert.rejects(aws("s3api", "head-object", "--bucket", bucket, "--key", "doc.txt"), /404|Not Found/);
    const withMarker = await json<Listed>("s3api", "list-object-versions", "--bucket", bucket, "--max-items", "10");
    assert.deepEqual(withMarker.DeleteMarkers!.map((m) => [m.VersionId, m.IsLatest]), [[marker.VersionId, true]]);
    // Paged by the CLI itself (--page-size 1: one version per request).
    const paged = await json<Listed>("s3api", "list-object-versions", "--bucket", bucket, "--page-size", "1");
    assert.equal(paged.Versions!.length + paged.DeleteMarkers!.length, 4);
    await aws("s3api", "delete-object", "--bucket", bucket, "--key", "doc.txt", "--version-id", marker.VersionId);
    await aws("s3api", "get-object", "--bucket", bucket, "--key", "doc.txt", out);
    assert.equal(await readFile(out, "utf8"), "third");
  }

  test("aws-cli v2: put-bucket-versioning, list-object-versions, get-object --version-id, delete markers", async () => {
    assert.ok(existsSync(AWS2), "Debian awscli (v2) is not installed");
    await awsCli(AWS2, "cli-v2");
  });

  test("aws-cli v1 (the aws on PATH): the same", async () => {
    const v = await run("aws", ["--version"], { env });
    assert.match(`${v.stdout}${v.stderr}`, /aws-cli\/1\./, "the aws on PATH is aws-cli v1");
    await awsCli("aws", "cli-v1");
  });

  test("boto3: the list_object_versions paginator walks versions and markers across pages", async () => {
    const script = `
import boto3, json, sys
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
s3.create_bucket(Bucket="boto-v")
s3.put_bucket_versioning(Bucket="boto-v", VersioningConfiguration={"Status": "Enabled"})
ids = [s3.put_object(Bucket="boto-v", Key="k%d" % (i % 2), Body=b"x" * i)["VersionId"] for i in range(5)]
marker = s3.delete_object(Bucket="boto-v", Key="k0")
pages, out = 0, []
for page in s3.get_paginator("list_object_versions").paginate(Bucket="boto-v", PaginationConfig={"PageSize": 2}):
    pages += 1
    out += [[v["Key"], v["VersionId"], v["IsLatest"]] for v in page.get("Versions", [])]
    out += [[m["Key"], m["VersionId"], m["IsLatest"], "marker"] for m in page.get("DeleteMarkers", [])]
old = s3.get_object(Bucket="boto-v", Key="k0", VersionId=ids[2])["Body"].read()
print(json.dumps({"ids": ids, "marker": marker["VersionId"], "pages": pages, "out": out, "old": len(old)}))
`;
    const r = JSON.parse((await run("/usr/bin/python3", ["-c", script, endpoint], { env, timeout: 60_000 })).stdout) as
      { ids: string[]; marker: string; pages: number; out: (string | boolean)[][]; old: number };
    assert.equal(r.pages, 3);
    assert.equal(r.old, 2);
    const markers = r.out.filter((e) => e[3] === "marker");
    assert.deepEqual(markers, [["k0", r.marker, true, "marker"]]);
    const versions = r.out.filter((e) => e[3] !== "marker").map((e) => e.slice(0, 3));
    const [a, b, c, d, e] = r.ids;
    assert.deepEqual(versions, [["k0", e, false], ["k0", c, false], ["k0", a, false], ["k1", d, true], ["k1", b, false]]);
  });

  test("rclone: --s3-versions lists old versions with a -vDATE suffix; --s3-version-at reads the past", async () => {
    assert.ok(existsSync("/usr/bin/rclone"), "Debian rclone is not installed");
    const rclone = async (...args: string[]) => (await run("/usr/bin/rclone", ["-q", ...args], { env, timeout: 60_000 })).stdout;
    await run(AWS2, ["--endpoint-url", endpoint, "s3api", "create-bucket", "--bucket", "rclone-v"], { env });
    await run(AWS2, ["--endpoint-url", endpoint, "s3api", "put-bucket-versioning", "--bucket", "rclone-v", "--versioning-configuration", "Status=Enabled"], { env });
    const put = (content: string) => run("/bin/sh", ["-c", `printf '%s' "$0" | /usr/bin/rclone -q rcat t:rclone-v/notes.txt`, content], { env, timeout: 60_000 });
    await put("version one");
    await sleep(1500);
    const between = new Date().toISOString();
    await sleep(1500);
    await put("version two, longer");
    const plain = (await rclone("lsf", "t:rclone-v")).trim().split("\n");
    assert.deepEqual(plain, ["notes.txt"]);
    const all = (await rclone("lsf", "--s3-versions", "t:rclone-v")).trim().split("\n").sort();
    assert.equal(all.length, 2, all.join(", "));
    assert.ok(all.includes("notes.txt"));
    for (const f of all.filter((x) => x !== "notes.txt")) assert.match(f, /^notes-v\d{4}-\d\d-\d\d-\d{6}-\d{3}\.txt$/);
    assert.equal(await rclone("cat", "t:rclone-v/notes.txt"), "version two, longer");
    assert.equal(await rclone("cat", "--s3-version-at", between, "t:rclone-v/notes.txt"), "version one");
  });
});
