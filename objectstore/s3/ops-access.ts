/**
 * The access-control operations: bucket and object ACLs (canned ACLs only,
 * or a grant list equivalent to one), bucket policies and their status, and
 * Block Public Access. authorize (access.ts) already let only the bucket's
 * owner through to these.
 */
import type { CannedAcl, PublicAccessBlock } from "../blob/index.js";
import { PUBLIC_ACLS, refusePublicAcl } from "./access.js";
import { readSmall } from "./body.js";
import { s3err } from "./errors.js";
import { body, sendEmpty, sendXml, CANNED_ACLS, type Ctx } from "./http.js";
import { MAX_POLICY_BYTES, parsePolicy, storedPolicy } from "./policy.js";
import { esc, list, parseXml, text, XML_DECL, S3_NS } from "./xml.js";

const MAX_XML = 64 << 10;
const ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers";
const AUTH_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";
const LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery";
/** The canned ACLs a grant list can stand for; other lists name grantees this store has no notion of. */
const SUPPORTED = "private, public-read, public-read-write, authenticated-read, log-delivery-write";

/** The grants besides the owner's FULL_CONTROL that S3 shows for a canned ACL. */
function groupGrants(acl: CannedAcl | undefined): [string, string][] {
  switch (acl) {
    case "public-read": return [[ALL_USERS, "READ"]];
    case "public-read-write": return [[ALL_USERS, "READ"], [ALL_USERS, "WRITE"]];
    case "authenticated-read": return [[AUTH_USERS, "READ"]];
    case "log-delivery-write": return [[LOG_DELIVERY, "WRITE"], [LOG_DELIVERY, "READ_ACP"]];
    default: return [];
  }
}

const XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"';

/** An AccessControlPolicy document as S3 writes it (xsi:type on every Grantee, which xmlDoc cannot render). */
export function aclDocument(owner: string, acl: CannedAcl | undefined): string {
  const o = esc(owner);
  const grants = [`<Grant><Grantee ${XSI} xsi:type="CanonicalUser"><ID>${o}</ID><DisplayName>${o}</DisplayName></Grantee><Permission>FULL_CONTROL</Permission></Grant>`,
    ...groupGrants(acl).map(([uri, perm]) => `<Grant><Grantee ${XSI} xsi:type="Group"><URI>${uri}</URI></Grantee><Permission>${perm}</Permission></Grant>`)];
  return `${XML_DECL}<AccessControlPolicy xmlns="${S3_NS}"><Owner><ID>${o}</ID><DisplayName>${o}</DisplayName></Owner><AccessControlList>${grants.join("")}</AccessControlList></AccessControlPolicy>`;
}

function sendDoc(ctx: Ctx, doc: string, type = "application/xml"): void {
  const data = Buffer.from(doc);
  ctx.res.writeHead(200, { "Content-Type": type, "Content-Length": data.length });
  ctx.res.end(data);
  ctx.bytesOut += data.length;
}

/** x-amz-grant-* name grantees one by one: refused rather than ignored. */
function refuseGrantHeaders(ctx: Ctx): void {
  for (const h of Object.keys(ctx.req.headers)) {
    if (h.startsWith("x-amz-grant-")) throw s3err("NotImplemented", `The ${h} header is not supported by this store: use x-amz-acl with one of the canned ACLs ${SUPPORTED}.`);
  }
}

/**
 * The canned ACL a write (PutObject, CopyObject, CreateMultipartUpload,
 * CreateBucket) asks for, after Block Public Access; undefined for none.
 * checkWriteHeaders already refused unknown names.
 */
export async function requestedAcl(ctx: Ctx): Promise<CannedAcl | undefined> {
  refuseGrantHeaders(ctx);
  const acl = ctx.req.headers["x-amz-acl"];
  if (typeof acl !== "string") return undefined;
  if (!CANNED_ACLS.includes(acl)) throw s3err("InvalidArgument", `x-amz-acl: unknown canned ACL '${acl}'.`, { ArgumentName: "x-amz-acl", ArgumentValue: acl });
  const canned = acl as CannedAcl;
  // Only a public ACL needs the bucket's Block Public Access settings: a private PUT costs no lookup.
  if (PUBLIC_ACLS.has(canned) && ctx.op !== "CreateBucket") refusePublicAcl(await ctx.store.getBucketConfig(ctx.bucket!, "publicAccessBlock"), canned);
  return canned === "private" ? undefined : canned;
}

/** The canned ACL an AccessControlPolicy body amounts to; NotImplemented for a grant list that is not one. */
export function cannedOfPolicy(xml: string, owner: string, forBucket: boolean): CannedAcl {
  const doc = parseXml(xml, "AccessControlPolicy");
  const acl = (doc as Record<string, unknown>).AccessControlList;
  const seen = new Set<string>();
  let ownerFull = false;
  for (const g of list(acl, "Grant")) {
    const grantee = (g as Record<string, unknown>).Grantee;
    const perm = text(g, "Permission")?.trim();
    if (!grantee || !perm) throw s3err("MalformedACLError", "Every Grant needs a Grantee and a Permission.");
    if (!["FULL_CONTROL", "READ", "WRITE", "READ_ACP", "WRITE_ACP"].includes(perm)) throw s3err("MalformedACLError", `Unknown permission ${perm}.`);
    const id = text(grantee, "ID")?.trim(), uri = text(grantee, "URI")?.trim();
    if (id !== undefined && id === owner && perm === "FULL_CONTROL") ownerFull = true;
    else if (uri !== undefined) seen.add(`${uri} ${perm}`);
    else seen.add(`other ${perm}`);
  }
  const same = (a: CannedAcl) => {
    const want = groupGrants(a).map(([u, p]) => `${u} ${p}`);
    return want.length === seen.size && want.every((w) => seen.has(w));
  };
  const candidates: CannedAcl[] = ["private", "public-read", "public-read-write", "authenticated-read", ...(forBucket ? ["log-delivery-write" as const] : [])];
  const hit = ownerFull ? candidates.find(same) : undefined;
  if (!hit) throw s3err("NotImplemented", `This store supports only ACLs equivalent to a canned ACL (${SUPPORTED}): the owner's FULL_CONTROL plus the canned ACL's group grants.`);
  return hit;
}

/** The ACL a PutBucketAcl / PutObjectAcl sets: the x-amz-acl header or an equivalent AccessControlPolicy body. */
async function aclOfRequest(ctx: Ctx, owner: string, forBucket: boolean): Promise<CannedAcl> {
  refuseGrantHeaders(ctx);
  const raw = (await readSmall(body(ctx), MAX_XML)).toString("utf8");
  const header = ctx.req.headers["x-amz-acl"];
  if (typeof header === "string" && raw.trim() !== "") throw s3err("UnexpectedContent", "Specify an ACL with either the x-amz-acl header or an AccessControlPolicy body, not both.");
  let acl: CannedAcl;
  if (typeof header === "string") {
    if (!CANNED_ACLS.includes(header)) throw s3err("InvalidArgument", `x-amz-acl: unknown canned ACL '${header}'.`, { ArgumentName: "x-amz-acl", ArgumentValue: header });
    acl = header as CannedAcl;
  } else if (raw.trim() !== "") {
    acl = cannedOfPolicy(raw, owner, forBucket);
  } else {
    throw s3err("MissingSecurityHeader", "Set an ACL with the x-amz-acl header or an AccessControlPolicy body.", { MissingHeaderName: "x-amz-acl" });
  }
  if (PUBLIC_ACLS.has(acl)) refusePublicAcl(await ctx.store.getBucketConfig(ctx.bucket!, "publicAccessBlock"), acl);
  return acl;
}

export async function getBucketAcl(ctx: Ctx) {
  const acl = await ctx.store.getBucketConfig(ctx.bucket!, "acl");
  sendDoc(ctx, aclDocument(ctx.access!.bucket.owner, acl));
}

export async function putBucketAcl(ctx: Ctx) {
  const acl = await aclOfRequest(ctx, ctx.access!.bucket.owner, true);
  // private is stored as no section: a bucket without ACL config is the cheap default in authorize.
  await ctx.store.putBucketConfig(ctx.bucket!, "acl", acl === "private" ? undefined : acl);
  sendEmpty(ctx, 200);
}

const versionOpt = (ctx: Ctx) => {
  const v = ctx.query.get("versionId");
  return v !== undefined ? { versionId: v } : undefined;
};

export async function getObjectAcl(ctx: Ctx) {
  const meta = await ctx.store.headObject(ctx.bucket!, ctx.key!);
  sendDoc(ctx, aclDocument(ctx.access!.bucket.owner, meta.acl));
}

export async function putObjectAcl(ctx: Ctx) {
  const acl = await aclOfRequest(ctx, ctx.access!.bucket.owner, false);
  // "private" is stored as such: updateObjectMeta keeps a field left undefined as it was.
  await ctx.store.updateObjectMeta(ctx.bucket!, ctx.key!, { acl }, versionOpt(ctx));
  sendEmpty(ctx, 200);
}

export async function putBucketPolicy(ctx: Ctx) {
  // readSmall answers an oversized body with MalformedXML; for a policy S3 says MalformedPolicy.
  const raw = (await readSmall(body(ctx), MAX_POLICY_BYTES).catch((err: unknown) => {
    if ((err as { code?: string }).code === "MalformedXML") throw s3err("MalformedPolicy", `Policies must be less than ${MAX_POLICY_BYTES / 1024} KB`);
    throw err;
  })).toString("utf8");
  const policy = parsePolicy(raw, ctx.bucket!);
  if (policy.isPublic) {
    const pab = await ctx.store.getBucketConfig(ctx.bucket!, "publicAccessBlock");
    if (pab?.blockPublicPolicy) throw s3err("AccessDenied", "Block Public Access (BlockPublicPolicy) refuses a public bucket policy on this bucket.");
  }
  await ctx.store.putBucketConfig(ctx.bucket!, "policy", raw);
  sendEmpty(ctx, 204);
}

export async function getBucketPolicy(ctx: Ctx) {
  const p = await ctx.store.getBucketConfig(ctx.bucket!, "policy");
  if (!p) throw s3err("NoSuchBucketPolicy", undefined, { BucketName: ctx.bucket! });
  sendDoc(ctx, p, "application/json");
}

export async function deleteBucketPolicy(ctx: Ctx) {
  await ctx.store.putBucketConfig(ctx.bucket!, "policy", undefined);
  sendEmpty(ctx, 204);
}

/** IsPublic: the policy grants public access and RestrictPublicBuckets does not confine it to the owner. */
export async function getBucketPolicyStatus(ctx: Ctx) {
  const p = await ctx.store.getBucketConfig(ctx.bucket!, "policy");
  if (!p) throw s3err("NoSuchBucketPolicy", undefined, { BucketName: ctx.bucket! });
  const pab = await ctx.store.getBucketConfig(ctx.bucket!, "publicAccessBlock");
  const isPublic = storedPolicy(p, ctx.bucket!).isPublic && !pab?.restrictPublicBuckets;
  sendXml(ctx, 200, "PolicyStatus", { IsPublic: isPublic ? "true" : "false" });
}

const PAB_FIELDS: [keyof PublicAccessBlock, string][] = [
  ["blockPublicAcls", "BlockPublicAcls"], ["ignorePublicAcls", "IgnorePublicAcls"], ["blockPublicPolicy", "BlockPublicPolicy"], ["restrictPublicBuckets", "RestrictPublicBuckets"],
];

export async function putPublicAccessBlock(ctx: Ctx) {
  const doc = parseXml((await readSmall(body(ctx), MAX_XML)).toString("utf8"), "PublicAccessBlockConfiguration");
  const pab = {} as PublicAccessBlock;
  for (const [field, tag] of PAB_FIELDS) {
    const v = text(doc, tag)?.trim().toLowerCase();
    if (v !== undefined && v !== "true" && v !== "false") throw s3err("MalformedXML", `${tag} must be true or false.`);
    pab[field] = v === "true";
  }
  for (const k of Object.keys(doc)) if (!PAB_FIELDS.some(([, t]) => t === k)) throw s3err("MalformedXML", `Unknown element ${k} in PublicAccessBlockConfiguration.`);
  await ctx.store.putBucketConfig(ctx.bucket!, "publicAccessBlock", pab);
  sendEmpty(ctx, 200);
}

export async function getPublicAccessBlock(ctx: Ctx) {
  const pab = await ctx.store.getBucketConfig(ctx.bucket!, "publicAccessBlock");
  if (!pab) throw s3err("NoSuchPublicAccessBlockConfiguration", undefined, { BucketName: ctx.bucket! });
  const out: Record<string, string> = {};
  for (const [field, tag] of PAB_FIELDS) out[tag] = pab[field] ? "true" : "false";
  sendXml(ctx, 200, "PublicAccessBlockConfiguration", out);
}

export async function deletePublicAccessBlock(ctx: Ctx) {
  await ctx.store.putBucketConfig(ctx.bucket!, "publicAccessBlock", undefined);
  sendEmpty(ctx, 204);
}
