/**
 * Access control on the in-memory store (whose updateObjectMeta exists
 * today): the protocol suite, and PutObjectAcl held to account without the
 * suite's merge-time `todo`.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { tmpdir } from "node:os";
import path from "node:path";
import { Registry } from "prom-client";
import { loadConfig } from "../../config/index.js";
import { createLogger } from "../../core/index.js";
import * as s3 from "@aws-sdk/client-s3";
import { MemoryBlobStore } from "../blob/index.js";
import { accessSuite } from "./suite-access.js";
import { createS3Server } from "./server.js";
import { codeOf, raw, startS3 } from "./test-fixture.js";
import type { S3Server } from "./types.js";

accessSuite(async () => {
  const store = new MemoryBlobStore();
  return { store, dispose: () => store.close() };
});

test("PutObjectAcl (memory store): a canned ACL or an equivalent grant list opens one object; private closes it", async () => {
  const f = await startS3();
  try {
    const c = f.client();
    await c.send(new s3.CreateBucketCommand({ Bucket: "objacl" }));
    await c.send(new s3.PutObjectCommand({ Bucket: "objacl", Key: "k", Body: "v" }));
    const anonGet = () => raw(f, { method: "GET", path: "/objacl/k", anonymous: true });
    assert.equal((await anonGet()).status, 403);
    await c.send(new s3.PutObjectAclCommand({ Bucket: "objacl", Key: "k", ACL: "public-read" }));
    const r = await anonGet();
    assert.equal(r.status, 200);
    assert.equal(r.body, "v");
    const acl = await c.send(new s3.GetObjectAclCommand({ Bucket: "objacl", Key: "k" }));
    assert.deepEqual(acl.Grants?.map((g) => [g.Grantee?.Type, g.Grantee?.URI ?? g.Grantee?.ID, g.Permission]), [
      ["CanonicalUser", "root", "FULL_CONTROL"], ["Group", "http://acs.amazonaws.com/groups/global/AllUsers", "READ"]]);
    await c.send(new s3.PutObjectAclCommand({ Bucket: "objacl", Key: "k", ACL: "private" }));
    assert.equal(codeOf((await anonGet()).body), "AccessDenied");
    await c.send(new s3.PutObjectAclCommand({ Bucket: "objacl", Key: "k", AccessControlPolicy: { Owner: { ID: "root" }, Grants: [
      { Grantee: { Type: "CanonicalUser", ID: "root" }, Permission: "FULL_CONTROL" },
      { Grantee: { Type: "Group", URI: "http://acs.amazonaws.com/groups/global/AuthenticatedUsers" }, Permission: "READ" }] } }));
    assert.equal((await c.send(new s3.GetObjectAclCommand({ Bucket: "objacl", Key: "k" }))).Grants?.[1]?.Grantee?.URI, "http://acs.amazonaws.com/groups/global/AuthenticatedUsers");
    await assert.rejects(c.send(new s3.PutObjectAclCommand({ Bucket: "objacl", Key: "absent", ACL: "public-read" })), (e: { name: string }) => e.name === "NoSuchKey");
  } finally {
    await f.close();
  }
});

test("aws:SecureTransport is true on the HTTPS S3 port: a policy opening objects over TLS only", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "thoc-s3-secure-"));
  const store = new MemoryBlobStore();
  const servers: S3Server[] = [];
  try {
    execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", path.join(dir, "k.pem"),
      "-out", path.join(dir, "c.pem"), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], { stdio: "ignore" });
    const cert = readFileSync(path.join(dir, "c.pem")), key = readFileSync(path.join(dir, "k.pem"));
    await store.createBucket("tls-only", "root");
    await store.putObject({ bucket: "tls-only", key: "k", body: (async function* () { yield Buffer.from("secret"); })(), headers: {}, userMeta: {}, expect: {} });
    await store.putBucketConfig("tls-only", "policy", JSON.stringify({ Statement: [{ Effect: "Allow", Principal: "*", Action: "s3:GetObject",
      Resource: "arn:aws:s3:::tls-only/*", Condition: { Bool: { "aws:SecureTransport": "true" } } }] }));
    const config = loadConfig({ dev: true, env: { THOC_PRESET: "test" }, flags: {} });
    const make = (tls?: { cert: Buffer; key: Buffer }) => {
      const s = createS3Server({ store, credentials: { lookup: async () => undefined }, config, log: createLogger("silent"), metrics: new Registry(), tls });
      servers.push(s);
      return s.listen("127.0.0.1", 0);
    };
    const [tlsPort, plainPort] = [await make({ cert, key }), await make()];
    const get = (mod: typeof https | typeof http, port: number) => new Promise<number>((resolve, reject) => {
      mod.get({ host: "127.0.0.1", port, path: "/tls-only/k", ca: cert, agent: false }, (res) => { res.resume(); resolve(res.statusCode!); }).on("error", reject);
    });
    assert.equal(await get(https, tlsPort), 200, "anonymous over HTTPS");
    assert.equal(await get(http, plainPort), 403, "anonymous over plaintext");
  } finally {
    for (const s of servers) await s.close(1000);
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
