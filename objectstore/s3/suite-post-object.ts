/**
 * POST Object (browser form uploads) over real sockets: forms signed with
 * SigV4 and SigV2 policies, each kind of condition met and failed, the field
 * coverage rule, expiry, success_action_status / success_action_redirect,
 * acl and tagging fields, the size range, bad forms answered with S3's codes
 * (storing nothing), and a 50 MiB file streamed through.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import * as s3 from "@aws-sdk/client-s3";
import { hmacSha1 } from "./sigv2.js";
import { hmac, signingKey, toAmzDate } from "./sigv4.js";
import { codeOf, KEYS, OTHER, ROOT, startS3, type Fixture, type MakeStore, type RawResponse } from "./test-fixture.js";

const MiB = 1024 * 1024;
type Field = [string, string];

/** The auth fields of a policy signed with SigV4 (the x-amz-* ones added to its conditions, as form generators do) or SigV2. */
export function signPolicy(conditions: unknown[], o: { v2?: boolean; key?: string; secret?: string; expiresInMs?: number; region?: string } = {}): Field[] {
  const key = o.key ?? ROOT, secret = o.secret ?? KEYS[key]?.secretKey ?? "x";
  const expiration = new Date(Date.now() + (o.expiresInMs ?? 600_000)).toISOString();
  if (o.v2) {
    const policy = Buffer.from(JSON.stringify({ expiration, conditions })).toString("base64");
    return [["AWSAccessKeyId", key], ["policy", policy], ["signature", hmacSha1(secret, policy)]];
  }
  const amzDate = toAmzDate(Date.now()), day = amzDate.slice(0, 8), region = o.region ?? "us-east-1";
  const credential = `${key}/${day}/${region}/s3/aws4_request`;
  const all = [...conditions, { "x-amz-algorithm": "AWS4-HMAC-SHA256" }, { "x-amz-credential": credential }, { "x-amz-date": amzDate }];
  const policy = Buffer.from(JSON.stringify({ expiration, conditions: all })).toString("base64");
  const signature = hmac(signingKey(secret, day, region, "s3"), policy).toString("hex");
  return [["X-Amz-Algorithm", "AWS4-HMAC-SHA256"], ["X-Amz-Credential", credential], ["X-Amz-Date", amzDate], ["Policy", policy], ["X-Amz-Signature", signature]];
}

export interface FormFile { filename?: string; contentType?: string; data: Buffer | (() => AsyncIterable<Buffer>) }

/** Sends a multipart/form-data POST: fields, then the file, then `after` fields; `cut` stops the body short (no closing boundary). */
export function postForm(port: number, path: string, fields: Field[], file?: FormFile, o: { after?: Field[]; cut?: boolean; host?: string; contentType?: string } = {}): Promise<RawResponse> {
  const boundary = "----thocform" + randomBytes(8).toString("hex");
  const part = (name: string, extra = "") => `--${boundary}\r\nContent-Disposition: form-data; name="${name}"${extra}\r\n`;
  const head = fields.map(([k, v]) => part(k) + `\r\n${v}\r\n`).join("")
    + (file ? part("file", file.filename !== undefined ? `; filename="${file.filename}"` : "") + `Content-Type: ${file.contentType ?? "application/octet-stream"}\r\n\r\n` : "");
  const tail = (file ? "\r\n" : "") + (o.after ?? []).map(([k, v]) => part(k) + `\r\n${v}\r\n`).join("") + `--${boundary}--\r\n`;
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: "127.0.0.1", port, method: "POST", path, agent: false,
      headers: { host: o.host ?? `127.0.0.1:${port}`, "content-type": o.contentType ?? `multipart/form-data; boundary=${boundary}`, "transfer-encoding": "chunked" },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on("error", reject);
    });
    req.on("error", (err) => (o.cut ? resolve({ status: 0, headers: {}, body: String(err) }) : reject(err)));
    void (async () => {
      const write = (b: Buffer | string) => (req.write(b) ? undefined : new Promise<void>((r) => req.once("drain", r)));
      await write(head);
      if (file) {
        if (Buffer.isBuffer(file.data)) await write(file.data);
        else for await (const c of file.data()) await write(c);
      }
      if (o.cut) return void req.end();
      await write(tail);
      req.end();
    })().catch(reject);
  });
}

export function postObjectSuite(makeStore: MakeStore): void {
  describe("POST Object (browser form uploads)", () => {
    let f: Fixture;
    let c: s3.S3Client;
    const B = "forms";
    const get = async (key: string) => {
      const g = await c.send(new s3.GetObjectCommand({ Bucket: B, Key: key }));
      return { body: Buffer.from(await g.Body!.transformToByteArray()), g };
    };
    const absent = async (key: string) => assert.rejects(c.send(new s3.HeadObjectCommand({ Bucket: B, Key: key })), (e: { name: string }) => e.name === "NotFound");
    before(async () => {
      f = await startS3({}, makeStore);
      c = f.client();
      await c.send(new s3.CreateBucketCommand({ Bucket: B }));
    });
    after(() => f.close());

    test("SigV4 policy: ${filename}, Content-Type, x-amz-meta-*, acl, tagging, success_action_status 201 (PostResponse)", async () => {
      const tagging = "<Tagging><TagSet><Tag><Key>team</Key><Value>web</Value></Tag></TagSet></Tagging>";
      const fields: Field[] = [["key", "user/eric/${filename}"], ["Content-Type", "image/png"], ["x-amz-meta-uuid", "14365123651274"], ["acl", "public-read"],
        ["tagging", tagging], ["success_action_status", "201"]];
      const auth = signPolicy([{ bucket: B }, ["starts-with", "$key", "user/eric/"], ["starts-with", "$Content-Type", "image/"], { "x-amz-meta-uuid": "14365123651274" },
        { acl: "public-read" }, ["eq", "$tagging", tagging], { success_action_status: "201" }]);
      const data = randomBytes(3000);
      const r = await postForm(f.port, `/${B}`, [...fields, ...auth], { filename: "C:\\photos\\cat.png", contentType: "image/png", data });
      assert.equal(r.status, 201, r.body);
      const md5 = createHash("md5").update(data).digest("hex");
      assert.match(r.body, new RegExp(`<PostResponse[^>]*><Location>http://127.0.0.1:${f.port}/${B}/user/eric/cat.png</Location><Bucket>${B}</Bucket><Key>user/eric/cat.png</Key><ETag>&quot;${md5}&quot;</ETag></PostResponse>`));
      assert.equal(r.headers.etag, `"${md5}"`);
      const { body, g } = await get("user/eric/cat.png");
      assert.ok(body.equals(data));
      assert.equal(g.ContentType, "image/png");
      assert.equal(g.Metadata?.uuid, "14365123651274");
      const meta = await f.store.headObject(B, "user/eric/cat.png");
      assert.equal(meta.acl, "public-read");
      assert.deepEqual(meta.tags, { team: "web" });
    });

    test("SigV2 policy: success_action_status 200, default 204, x-ignore-* and fields after the file left out", async () => {
      const auth = signPolicy([{ bucket: B }, ["starts-with", "$key", "v2/"], ["eq", "$success_action_status", "200"]], { v2: true });
      const r = await postForm(f.port, `/${B}`, [["key", "v2/a"], ["success_action_status", "200"], ["x-ignore-note", "anything"], ...auth], { data: Buffer.from("v2 form") }, { after: [["x-amz-meta-late", "ignored"]] });
      assert.equal(r.status, 200, r.body);
      assert.equal(r.body, "");
      const { body, g } = await get("v2/a");
      assert.equal(body.toString(), "v2 form");
      assert.equal(g.Metadata?.late, undefined);
      const d = await postForm(f.port, `/${B}`, [["key", "v2/b"], ...signPolicy([{ bucket: B }, { key: "v2/b" }], { v2: true })], { data: Buffer.from("b") });
      assert.equal(d.status, 204, d.body);
      assert.equal(d.headers.location, `http://127.0.0.1:${f.port}/${B}/v2/b`);
    });

    test("success_action_redirect answers 303 with bucket, key and etag", async () => {
      const url = "https://app.example/done?x=1";
      const r = await postForm(f.port, `/${B}`, [["key", "r/1"], ["success_action_redirect", url], ...signPolicy([{ bucket: B }, { key: "r/1" }, { success_action_redirect: url }])], { data: Buffer.from("redir") });
      assert.equal(r.status, 303, r.body);
      const loc = new URL(String(r.headers.location));
      assert.equal(loc.origin + loc.pathname, "https://app.example/done");
      assert.equal(loc.searchParams.get("x"), "1");
      assert.equal(loc.searchParams.get("bucket"), B);
      assert.equal(loc.searchParams.get("key"), "r/1");
      assert.equal(loc.searchParams.get("etag"), `"${createHash("md5").update("redir").digest("hex")}"`);
    });

    test("each condition kind failing: eq (object and array form), starts-with, content-length-range; nothing is stored", async () => {
      const cases: [string, Field[], unknown[], string][] = [
        ["f/eq1", [["Content-Type", "text/html"]], [{ key: "f/eq1" }, { "content-type": "text/plain" }], '["eq", "$content-type", "text/plain"]'],
        ["f/eq2", [["x-amz-meta-a", "2"]], [{ key: "f/eq2" }, ["eq", "$x-amz-meta-a", "1"]], '["eq", "$x-amz-meta-a", "1"]'],
        ["g/sw", [], [["starts-with", "$key", "f/"]], '["starts-with", "$key", "f/"]'],
        ["f/bucket", [], [{ key: "f/bucket" }, { bucket: "another" }], '["eq", "$bucket", "another"]'],
      ];
      for (const [key, extra, conds, failed] of cases) {
        const r = await postForm(f.port, `/${B}`, [["key", key], ...extra, ...signPolicy(conds)], { data: Buffer.from("x") });
        assert.equal(r.status, 403, `${key}: ${r.body}`);
        assert.equal(codeOf(r.body), "AccessDenied");
        assert.ok(r.body.includes(`Invalid according to Policy: Policy Condition failed: ${failed.replace(/"/g, "&quot;")}`), r.body);
        await absent(key);
      }
      const range = (key: string, n: number) => postForm(f.port, `/${B}`, [["key", key], ...signPolicy([{ key }, ["content-length-range", 10, 100]])], { data: Buffer.alloc(n, 1) });
      assert.equal((await range("f/ok", 50)).status, 204);
      const big = await range("f/big", 101);
      assert.equal(codeOf(big.body), "EntityTooLarge", big.body);
      const small = await range("f/small", 9);
      assert.equal(codeOf(small.body), "EntityTooSmall", small.body);
      await absent("f/big");
      await absent("f/small");
    });

    test("the policy's coverage and expiry, signatures, keys and owners", async () => {
      const extra = await postForm(f.port, `/${B}`, [["key", "e/1"], ["x-amz-meta-sneaky", "1"], ...signPolicy([{ key: "e/1" }])], { data: Buffer.from("x") });
      assert.equal(codeOf(extra.body), "AccessDenied");
      assert.match(extra.body, /Invalid according to Policy: Extra input fields: x-amz-meta-sneaky/);
      const expired = await postForm(f.port, `/${B}`, [["key", "e/2"], ...signPolicy([{ key: "e/2" }], { expiresInMs: -1000 })], { data: Buffer.from("x") });
      assert.equal(codeOf(expired.body), "AccessDenied");
      assert.match(expired.body, /Invalid according to Policy: Policy expired/);
      for (const v2 of [false, true]) {
        const wrong = await postForm(f.port, `/${B}`, [["key", "e/3"], ...signPolicy([{ key: "e/3" }], { v2, secret: "not the secret" })], { data: Buffer.from("x") });
        assert.equal(codeOf(wrong.body), "SignatureDoesNotMatch", wrong.body);
        const unknown = await postForm(f.port, `/${B}`, [["key", "e/3"], ...signPolicy([{ key: "e/3" }], { v2, key: "AKIANOSUCHKEY0000000" })], { data: Buffer.from("x") });
        assert.equal(codeOf(unknown.body), "InvalidAccessKeyId", unknown.body);
        const other = await postForm(f.port, `/${B}`, [["key", "e/3"], ...signPolicy([{ key: "e/3" }], { v2, key: OTHER })], { data: Buffer.from("x") });
        assert.equal(codeOf(other.body), "AccessDenied", other.body);
      }
      const region = await postForm(f.port, `/${B}`, [["key", "e/3"], ...signPolicy([{ key: "e/3" }], { region: "eu-west-1" })], { data: Buffer.from("x") });
      assert.equal(codeOf(region.body), "InvalidArgument", region.body);
      const tampered = signPolicy([{ key: "e/4" }]);
      tampered[3] = ["Policy", Buffer.from(JSON.stringify({ expiration: "2099-01-01T00:00:00Z", conditions: [] })).toString("base64")];
      assert.equal(codeOf((await postForm(f.port, `/${B}`, [["key", "e/4"], ...tampered], { data: Buffer.from("x") })).body), "SignatureDoesNotMatch");
      const anonymous = await postForm(f.port, `/${B}`, [["key", "e/5"]], { data: Buffer.from("x") });
      assert.equal(codeOf(anonymous.body), "AccessDenied");
      for (const k of ["e/1", "e/2", "e/3", "e/4", "e/5"]) await absent(k);
    });

    test("bad forms: not multipart, no file, no key, a policy that is not JSON, a bad acl or tagging, a truncated body, no bucket", async () => {
      const notForm = await postForm(f.port, `/${B}`, [], undefined, { contentType: "application/x-www-form-urlencoded" });
      assert.equal(notForm.status, 412);
      assert.equal(codeOf(notForm.body), "PreconditionFailed");
      const noFile = await postForm(f.port, `/${B}`, [["key", "n/1"], ...signPolicy([{ key: "n/1" }])]);
      assert.equal(codeOf(noFile.body), "InvalidArgument", noFile.body);
      const noKey = await postForm(f.port, `/${B}`, signPolicy([]), { data: Buffer.from("x") });
      assert.equal(codeOf(noKey.body), "InvalidArgument", noKey.body);
      const notJson = signPolicy([{ key: "n/2" }], { v2: true });
      notJson[1] = ["policy", Buffer.from("{not json").toString("base64")];
      notJson[2] = ["signature", hmacSha1(KEYS[ROOT]!.secretKey, notJson[1][1])];
      const nj = await postForm(f.port, `/${B}`, [["key", "n/2"], ...notJson], { data: Buffer.from("x") });
      assert.equal(codeOf(nj.body), "InvalidPolicyDocument", nj.body);
      const acl = await postForm(f.port, `/${B}`, [["key", "n/3"], ["acl", "everyone"], ...signPolicy([{ key: "n/3" }, { acl: "everyone" }])], { data: Buffer.from("x") });
      assert.equal(codeOf(acl.body), "InvalidArgument", acl.body);
      const tag = await postForm(f.port, `/${B}`, [["key", "n/4"], ["tagging", "<Tagging><TagSet"], ...signPolicy([{ key: "n/4" }, { tagging: "<Tagging><TagSet" }])], { data: Buffer.from("x") });
      assert.equal(codeOf(tag.body), "MalformedXML", tag.body);
      const cut = await postForm(f.port, `/${B}`, [["key", "n/5"], ...signPolicy([{ key: "n/5" }])], { data: Buffer.alloc(100_000, 2) }, { cut: true });
      assert.ok(cut.status === 0 || codeOf(cut.body) === "IncompleteBody", `${cut.status} ${cut.body}`);
      const nb = await postForm(f.port, "/no-such-bucket", [["key", "n/6"], ...signPolicy([{ key: "n/6" }])], { data: Buffer.from("x") });
      assert.equal(codeOf(nb.body), "NoSuchBucket", nb.body);
      for (const k of ["n/1", "n/2", "n/3", "n/4", "n/5"]) await absent(k);
      assert.equal((await c.send(new s3.ListBucketsCommand({}))).$metadata.httpStatusCode, 200, "the agent is still up");
    });

    test("encryption at rest: an x-amz-server-side-encryption field and the bucket's default encryption seal the file; aws:kms and SSE-C over plain HTTP are refused", async () => {
      const E = "forms-enc";
      await c.send(new s3.CreateBucketCommand({ Bucket: E }));
      const send = (key: string, extra: Field[] = []) => postForm(f.port, `/${E}`, [
        ["key", key], ...extra, ...signPolicy([{ bucket: E }, { key }, ...extra.map(([k, v]) => ({ [k]: v }))]),
      ], { data: Buffer.from(`plaintext marker of ${key}`) });
      const sealedAtRest = async (key: string) => {
        const stored = await f.store.getObject(E, key);
        const chunks: Buffer[] = [];
        for await (const ch of stored.body) chunks.push(Buffer.from(ch));
        assert.equal(stored.meta.sse?.mode, "SSE-S3", `${key} is encrypted at rest`);
        assert.ok(!Buffer.concat(chunks).includes("plaintext marker"), `${key}: the store holds ciphertext`);
        const g = await c.send(new s3.GetObjectCommand({ Bucket: E, Key: key }));
        assert.equal(g.ServerSideEncryption, "AES256");
        assert.equal(await g.Body!.transformToString(), `plaintext marker of ${key}`);
      };
      const field = await send("field", [["x-amz-server-side-encryption", "AES256"]]);
      assert.equal(field.status, 204, field.body);
      assert.equal(field.headers["x-amz-server-side-encryption"], "AES256");
      await sealedAtRest("field");
      const kms = await send("kms", [["x-amz-server-side-encryption", "aws:kms"]]);
      assert.equal(codeOf(kms.body), "NotImplemented", kms.body);
      const ssec = await send("ssec", [["x-amz-server-side-encryption-customer-algorithm", "AES256"], ["x-amz-server-side-encryption-customer-key", Buffer.alloc(32, 7).toString("base64")],
        ["x-amz-server-side-encryption-customer-key-MD5", createHash("md5").update(Buffer.alloc(32, 7)).digest("base64")]]);
      assert.equal(codeOf(ssec.body), "InvalidRequest", "SSE-C keys are refused over plain HTTP, as on a PUT");
      await c.send(new s3.PutBucketEncryptionCommand({ Bucket: E, ServerSideEncryptionConfiguration: { Rules: [{ ApplyServerSideEncryptionByDefault: { SSEAlgorithm: "AES256" } }] } }));
      assert.equal((await send("default")).status, 204);
      await sealedAtRest("default");
      for (const k of ["kms", "ssec"]) await assert.rejects(c.send(new s3.HeadObjectCommand({ Bucket: E, Key: k })), (e: { name: string }) => e.name === "NotFound");
    });

    test("a 50 MiB file streams through (sent in 1 MiB chunks, stored byte for byte)", async () => {
      const block = randomBytes(MiB);
      const sha = createHash("sha256");
      for (let i = 0; i < 50; i++) sha.update(block);
      const r = await postForm(f.port, `/${B}`, [["key", "big/${filename}"], ...signPolicy([["starts-with", "$key", "big/"], ["content-length-range", 1, 60 * MiB]])],
        { filename: "fifty.bin", data: async function* () { for (let i = 0; i < 50; i++) yield block; } });
      assert.equal(r.status, 204, r.body);
      const g = await c.send(new s3.GetObjectCommand({ Bucket: B, Key: "big/fifty.bin" }));
      assert.equal(g.ContentLength, 50 * MiB);
      const got = createHash("sha256");
      for await (const chunk of g.Body as AsyncIterable<Uint8Array>) got.update(chunk);
      assert.equal(got.digest("hex"), sha.digest("hex"));
    });
  });
}
