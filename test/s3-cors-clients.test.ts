/**
 * CORS and GetObjectAttributes with a real client against a real
 * `thoc-node agent --dev`: Debian's aws-cli (`s3api put-bucket-cors`,
 * `get-bucket-cors`, `delete-bucket-cors`, `get-object-attributes`), and the
 * preflight and cross-origin PUT a browser would then send (fetch() with
 * Origin and Access-Control-Request-*).
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
const ACCESS = "AKIATHOCCORSTEST0001";
const SECRET = "cors-clients-secret/0123456789+abcdefghij";
const REGION = "us-east-1";
const AWS = "/usr/bin/aws";
const APP = "https://app.example.com";

describe("CORS with aws-cli against a --dev agent", () => {
  let cluster: Cluster;
  let endpoint: string;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  const aws = async (args: string[]) => (await run(AWS, ["--endpoint-url", endpoint, "--output", "json", ...args], { env, timeout: 60_000 })).stdout;

  before(async () => {
    cluster = await startCluster(1, { env: { THOC_S3_ACCESS_KEY: ACCESS, THOC_S3_SECRET_KEY: SECRET } });
    endpoint = cluster.agents[0]!.s3Url;
    dir = await mkdtemp(path.join(tmpdir(), "thoc-s3-cors-"));
    env = { PATH: process.env.PATH, HOME: dir, AWS_ACCESS_KEY_ID: ACCESS, AWS_SECRET_ACCESS_KEY: SECRET, AWS_DEFAULT_REGION: REGION,
      AWS_CONFIG_FILE: "/dev/null", AWS_SHARED_CREDENTIALS_FILE: "/dev/null", AWS_PAGER: "" };
  });
  after(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("s3api put/get/delete-bucket-cors, then a browser's preflight and cross-origin PUT; get-object-attributes", async () => {
    assert.ok(existsSync(AWS), "Debian awscli is not installed: apt-get install awscli");
    await aws(["s3api", "create-bucket", "--bucket", "site"]);
    const config = {
      CORSRules: [
        { ID: "browser-uploads", AllowedOrigins: [APP], AllowedMethods: ["PUT", "GET", "HEAD"], AllowedHeaders: ["*"], ExposeHeaders: ["ETag"], MaxAgeSeconds: 3000 },
        { AllowedOrigins: ["*"], AllowedMethods: ["GET"] },
      ],
    };
    const file = path.join(dir, "cors.json");
    await writeFile(file, JSON.stringify(config));
    await aws(["s3api", "put-bucket-cors", "--bucket", "site", "--cors-configuration", `file://${file}`]);
    assert.deepEqual(JSON.parse(await aws(["s3api", "get-bucket-cors", "--bucket", "site"])), config);

    const pre = await fetch(`${endpoint}/site/upload.txt`, { method: "OPTIONS", headers: { Origin: APP, "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "content-type,x-amz-date" } });
    assert.equal(pre.status, 200);
    assert.equal(pre.headers.get("access-control-allow-origin"), APP);
    assert.equal(pre.headers.get("access-control-allow-methods"), "PUT, GET, HEAD");
    assert.equal(pre.headers.get("access-control-allow-headers"), "content-type, x-amz-date");
    assert.equal(pre.headers.get("access-control-max-age"), "3000");
    // aws-cli presigns GETs only (the presigned cross-origin PUT is in the protocol suite, suite-cors.ts): the object goes up
    // through aws-cli and comes back through a presigned cross-origin GET, as a page would read it.
    await writeFile(path.join(dir, "upload.txt"), "from the browser");
    await aws(["s3api", "put-object", "--bucket", "site", "--key", "upload.txt", "--body", path.join(dir, "upload.txt")]);
    const url = (await aws(["s3", "presign", "s3://site/upload.txt", "--expires-in", "300"])).trim();
    const get = await fetch(url, { headers: { Origin: APP } });
    assert.equal(get.status, 200);
    assert.equal(await get.text(), "from the browser");
    assert.equal(get.headers.get("access-control-allow-origin"), APP);
    assert.equal(get.headers.get("access-control-expose-headers"), "ETag");

    const attrs = JSON.parse(await aws(["s3api", "get-object-attributes", "--bucket", "site", "--key", "upload.txt", "--object-attributes", "ETag", "ObjectSize", "StorageClass"]));
    assert.equal(attrs.ObjectSize, 16);
    assert.equal(attrs.StorageClass, "STANDARD");
    assert.match(attrs.ETag, /^[0-9a-f]{32}$/);

    await aws(["s3api", "delete-bucket-cors", "--bucket", "site"]);
    await assert.rejects(aws(["s3api", "get-bucket-cors", "--bucket", "site"]), (e: { stderr: string }) => /NoSuchCORSConfiguration/.test(e.stderr));
    const refused = await fetch(`${endpoint}/site/upload.txt`, { method: "OPTIONS", headers: { Origin: APP, "Access-Control-Request-Method": "PUT" } });
    assert.equal(refused.status, 403);
    assert.match(await refused.text(), /<Code>AccessForbidden<\/Code>/);
  });
});
