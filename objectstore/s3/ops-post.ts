/**
 * POST Object: a browser form upload (multipart/form-data) to a bucket. It is
 * signed by its policy fields, not an Authorization header, so the pipeline
 * hands it over unauthenticated (UNVERIFIED) and this handler verifies the
 * signature (post-policy.ts) once the fields before the file are read, then
 * authorizes the signer (or an anonymous form) as a PutObject of the key
 * (access.ts: the owner, a policy Allow or a public-read-write ACL). The
 * file part is streamed into the store as it arrives; fields after it are
 * ignored, as S3 ignores them.
 */
import type { IncomingHttpHeaders } from "node:http";
import type { CannedAcl } from "../blob/index.js";
import type { PreparedBody } from "./body.js";
import { s3err } from "./errors.js";
import { boundaryOf, FormReader } from "./form.js";
import { ANONYMOUS, authorize, PUBLIC_ACLS, refusePublicAcl } from "./access.js";
import { body, CANNED_ACLS, checkWriteHeaders, objectHeadersOf, quote, sendEmpty, sendXml, userMetaOf, type Ctx } from "./http.js";
import { checkPolicy, parsePolicy, verifyPostSignature } from "./post-policy.js";
import { sealNew, writeRequest } from "./sse.js";
import { uriEncode, UNSIGNED, type AuthPolicy, type AuthResult } from "./sigv4.js";
import type { CredentialLookup } from "./types.js";
import { list, parseXml, text } from "./xml.js";

/** What a POST Object request carries until its form's signature is verified: no key, no owner (owns nothing). */
export const UNVERIFIED: AuthResult = { accessKeyId: "", owner: "", payload: UNSIGNED, chain: { key: Buffer.alloc(0), amzDate: "", scope: "", seed: "" } };

/** The form fields before the file (policy included) are read whole; beyond this many bytes the upload is refused. */
const MAX_PRE_FILE_BYTES = 64 * 1024;
/** Fields after the file are read and dropped up to this much, so the connection can be reused. */
const MAX_AFTER_FILE_BYTES = 1 << 20;
const MAX_OBJECT = 5 * 1024 ** 3;

/** Form fields that are stored as the object's headers (the rest of x-amz-* goes through checkWriteHeaders). */
const HEADER_FIELDS = new Set(["content-type", "cache-control", "content-disposition", "content-encoding", "content-language", "expires"]);
/** x-amz-* fields that belong to the signature, not the object. */
const AUTH_FIELDS = new Set(["x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature", "x-amz-security-token"]);
/** Fields that make a form a signed one (V4 or V2). */
const SIGNATURE_FIELDS = ["x-amz-signature", "x-amz-algorithm", "x-amz-credential", "awsaccesskeyid", "signature"];

export async function postObject(ctx: Ctx, creds: CredentialLookup, policy: AuthPolicy): Promise<void> {
  const boundary = boundaryOf(ctx.req.headers["content-type"]);
  if (!boundary) throw s3err("PreconditionFailed", undefined, { Condition: "Bucket POST must be of the enclosure-type multipart/form-data" });
  const prepared = body(ctx);
  const form = new FormReader(prepared.body, boundary);
  try {
    await receive(ctx, creds, policy, prepared, form);
  } finally {
    await form.close();
  }
}

async function receive(ctx: Ctx, creds: CredentialLookup, policy: AuthPolicy, prepared: PreparedBody, form: FormReader): Promise<void> {
  const fields = new Map<string, string>();
  let file: { filename?: string } | undefined;
  for (let part = await form.part(); part; part = await form.part()) {
    const name = part.name.toLowerCase();
    if (name === "file") {
      file = { filename: part.filename };
      break;
    }
    const value = await form.value(MAX_PRE_FILE_BYTES);
    if (fields.has(name)) throw s3err("InvalidArgument", `The form field '${part.name}' appears more than once.`, { ArgumentName: part.name });
    fields.set(name, value);
  }
  if (!file) throw s3err("InvalidArgument", "POST requires exactly one file upload per request.", { ArgumentName: "file", ArgumentValue: "0" });

  // A form with neither a policy nor signature fields is anonymous (S3 takes it where the bucket lets anyone write); else its signature names the signer.
  let range = { min: 0, max: Infinity };
  if (!fields.has("policy") && !SIGNATURE_FIELDS.some((f) => fields.has(f))) {
    ctx.auth = ANONYMOUS;
  } else {
    const signer = await verifyPostSignature(fields, creds, policy);
    ctx.auth = { ...UNVERIFIED, accessKeyId: signer.accessKeyId, owner: signer.owner };
    range = checkPolicy(parsePolicy(fields.get("policy")!), fields, ctx.bucket!, (policy.now ?? Date.now)());
  }

  const rawKey = fields.get("key");
  if (rawKey === undefined || rawKey === "") throw s3err("InvalidArgument", "Bucket POST must contain a field named 'key'.  If it is specified, please check the order of the fields.", { ArgumentName: "key", ArgumentValue: "" });
  const filename = (file.filename ?? "").split(/[\\/]/).pop()!;
  const key = rawKey.replaceAll("${filename}", filename);
  if (Buffer.byteLength(key) > 1024) throw s3err("KeyTooLongError", undefined, { Size: String(Buffer.byteLength(key)), MaxSizeAllowed: "1024" });
  // Decided as a PutObject of that key by the signer would be: the owner, or whom the bucket's policy or ACL lets write it.
  ctx.access = await authorize({ op: "PutObject", bucket: ctx.bucket!, key, auth: ctx.auth, store: ctx.store, req: ctx.req, query: new Map() });

  const h = objectHeaders(fields);
  checkWriteHeaders(h);
  const acl = fields.get("acl");
  // Block Public Access (BlockPublicAcls) refuses a public acl field as it refuses x-amz-acl.
  if (acl !== undefined && PUBLIC_ACLS.has(acl as CannedAcl)) refusePublicAcl(await ctx.store.getBucketConfig(ctx.bucket!, "publicAccessBlock"), acl as CannedAcl);
  const tags = fields.has("tagging") ? parseTagging(fields.get("tagging")!) : undefined;

  // The form's x-amz-server-side-encryption(-customer-*) fields, else the bucket's default encryption, as a PUT's headers would.
  const enc = await writeRequest(ctx, h);
  let n = 0;
  const max = Math.min(range.max, MAX_OBJECT);
  const plain = form.stream({
    chunk(len) {
      n += len;
      if (n > max) throw s3err("EntityTooLarge", "Your proposed upload exceeds the maximum allowed size", { ProposedSize: String(n), MaxSizeAllowed: String(max) });
    },
    end() {
      if (n < range.min) throw s3err("EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size", { ProposedSize: String(n), MinSizeAllowed: String(range.min) });
    },
  });
  const expect = { checksums: {}, computeChecksums: [] };
  const sealed = enc && sealNew(ctx, enc, plain, expect);
  const meta = await ctx.store.putObject({
    bucket: ctx.bucket!, key, expect: sealed?.expect ?? expect, body: sealed?.body ?? plain,
    headers: objectHeadersOf(h), userMeta: userMetaOf(h, ctx.config.limits.maxMetaBytesPerObject),
    extras: { ...(acl !== undefined ? { acl: acl as CannedAcl } : {}), ...(tags ? { tags } : {}), ...(sealed ? { sse: sealed.sse } : {}) },
  }).catch((err: unknown) => { throw prepared.mapError(err); });
  if (!(await form.drain(MAX_AFTER_FILE_BYTES))) ctx.res.setHeader("Connection", "close");
  answer(ctx, fields, key, meta.etag, sealed?.headers);
}

/** The fields a PUT would have sent as headers, so the same checks and stored headers apply (acl as x-amz-acl). */
function objectHeaders(fields: Map<string, string>): IncomingHttpHeaders {
  const h: IncomingHttpHeaders = {};
  for (const [name, v] of fields) {
    if (HEADER_FIELDS.has(name) || (name.startsWith("x-amz-") && !AUTH_FIELDS.has(name))) h[name] = v;
  }
  const acl = fields.get("acl");
  if (acl !== undefined) {
    if (!CANNED_ACLS.includes(acl)) throw s3err("InvalidArgument", `acl: unknown canned ACL '${acl}'.`, { ArgumentName: "acl", ArgumentValue: acl });
    h["x-amz-acl"] = acl;
  }
  return h;
}

/** The tagging field: a <Tagging><TagSet><Tag><Key/><Value/></Tag>...</TagSet></Tagging> document, as PutObjectTagging takes. */
function parseTagging(xml: string): Record<string, string> {
  const doc = parseXml(xml, "Tagging");
  const tags: Record<string, string> = {};
  const set = (doc as Record<string, unknown>).TagSet;
  const all = list(set, "Tag");
  if (all.length > 10) throw s3err("BadRequest", "Object tags cannot be greater than 10");
  for (const t of all) {
    const k = text(t, "Key"), v = text(t, "Value") ?? "";
    if (k === undefined || k.length === 0 || k.length > 128 || v.length > 256) throw s3err("InvalidTag", "The TagKey or TagValue you have provided is invalid (keys 1-128 characters, values up to 256).");
    if (k in tags) throw s3err("InvalidTag", "Cannot provide multiple Tags with the same key");
    tags[k] = v;
  }
  return tags;
}

/** success_action_redirect (303 to it with bucket, key and etag), else success_action_status 200, 201 (PostResponse XML) or 204. */
function answer(ctx: Ctx, fields: Map<string, string>, key: string, etag: string, sse: Record<string, string> = {}): void {
  const host = ctx.req.headers.host ?? "localhost";
  const scheme = (ctx.req.socket as { encrypted?: boolean }).encrypted ? "https" : "http";
  // The bucket's URL as the client addressed it (path- or virtual-host style), then the key.
  const bucketPath = (ctx.req.url ?? "/").replace(/^[a-z]+:\/\/[^/]*/i, "").split("?")[0]!.replace(/\/+$/, "");
  const location = `${scheme}://${host}${bucketPath}/${uriEncode(key, true)}`;
  const headers = { ETag: quote(etag), Location: location, ...sse };
  const redirect = fields.get("success_action_redirect") ?? fields.get("redirect");
  if (redirect) {
    try {
      const u = new URL(redirect);
      u.searchParams.set("bucket", ctx.bucket!);
      u.searchParams.set("key", key);
      u.searchParams.set("etag", quote(etag));
      return sendEmpty(ctx, 303, { ...headers, Location: u.toString() });
    } catch { /* not a URL: S3 ignores it and answers by status */ }
  }
  const status = fields.get("success_action_status");
  if (status === "201") return sendXml(ctx, 201, "PostResponse", { Location: location, Bucket: ctx.bucket!, Key: key, ETag: quote(etag) }, headers);
  sendEmpty(ctx, status === "200" ? 200 : 204, headers);
}
