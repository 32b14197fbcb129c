/**
 * The signed policy of a browser form upload (POST Object): its signature
 * (SigV4: HMAC-SHA256 with the scope's signing key over the base64 policy;
 * SigV2: HMAC-SHA1 with the secret), its expiration, and its conditions,
 * which every form field but the exempt ones must be covered by, as S3
 * requires (otherwise a form could add fields its signer never allowed).
 */
import { s3err } from "./errors.js";
import { checkV2Allowed, hmacSha1 } from "./sigv2.js";
import { equalHex, hmac, signingKey, type AuthPolicy } from "./sigv4.js";
import type { Credential, CredentialLookup } from "./types.js";

type Condition =
  | { op: "eq" | "starts-with"; field: string; value: string; text: string }
  | { op: "content-length-range"; min: number; max: number; text: string };

export interface PostPolicy { expiration: number; conditions: Condition[] }

/** Form fields no condition needs to name: the file, the policy and its signature, and x-ignore-*. */
const EXEMPT = new Set(["file", "policy", "x-amz-signature", "signature", "awsaccesskeyid"]);

const invalid = (why: string) => s3err("InvalidPolicyDocument", `Invalid Policy: ${why}`);
const denied = (why: string) => s3err("AccessDenied", `Invalid according to Policy: ${why}`);
const show = (items: unknown[]) => `[${items.map((x) => JSON.stringify(x)).join(", ")}]`;

/** The base64 policy document → its expiration and conditions; InvalidPolicyDocument when it is not one. */
export function parsePolicy(b64: string): PostPolicy {
  let doc: unknown;
  try { doc = JSON.parse(Buffer.from(b64, "base64").toString("utf8")); } catch { throw invalid("Invalid JSON."); }
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) throw invalid("Invalid JSON.");
  const d = doc as Record<string, unknown>;
  if (typeof d.expiration !== "string") throw invalid("Policy missing expiration.");
  const expiration = Date.parse(d.expiration);
  if (Number.isNaN(expiration)) throw invalid(`Invalid 'expiration' value: '${d.expiration}'`);
  if (!Array.isArray(d.conditions)) throw invalid("Policy missing conditions.");
  const conditions: Condition[] = [];
  for (const c of d.conditions as unknown[]) {
    if (Array.isArray(c)) {
      const op = String(c[0]).toLowerCase();
      if (op === "content-length-range") {
        const [min, max] = [Number(c[1]), Number(c[2])];
        if (c.length !== 3 || !Number.isSafeInteger(min) || !Number.isSafeInteger(max) || min < 0 || max < min) throw invalid(`Invalid content-length-range condition: ${show(c)}`);
        conditions.push({ op, min, max, text: show(c) });
      } else if ((op === "eq" || op === "starts-with") && c.length === 3 && typeof c[1] === "string" && c[1].startsWith("$") && typeof c[2] === "string") {
        conditions.push({ op, field: c[1].slice(1).toLowerCase(), value: c[2], text: show(c) });
      } else {
        throw invalid(`Invalid condition: ${show(c)}`);
      }
    } else if (c && typeof c === "object") {
      for (const [k, v] of Object.entries(c as Record<string, unknown>)) {
        if (typeof v !== "string") throw invalid(`Invalid value for condition ${JSON.stringify(k)}.`);
        conditions.push({ op: "eq", field: k.toLowerCase(), value: v, text: show(["eq", `$${k}`, v]) });
      }
    } else {
      throw invalid(`Invalid condition: ${JSON.stringify(c)}`);
    }
  }
  return { expiration, conditions };
}

/**
 * Verifies the form's signature over its policy field (SigV4 fields, or SigV2
 * AWSAccessKeyId + signature) and returns the signer's key. Field names are
 * lower-cased in `fields`.
 */
export async function verifyPostSignature(fields: Map<string, string>, creds: CredentialLookup, policy: AuthPolicy): Promise<Credential & { accessKeyId: string }> {
  const b64 = fields.get("policy");
  const v4 = fields.has("x-amz-signature") || fields.has("x-amz-algorithm") || fields.has("x-amz-credential");
  const v2 = fields.has("awsaccesskeyid") || fields.has("signature");
  if (b64 === undefined || (!v4 && !v2)) {
    if (b64 === undefined && !v4 && !v2) throw s3err("AccessDenied", "Anonymous form uploads are not allowed: sign the form's policy (x-amz-credential, x-amz-signature...).");
    throw s3err("InvalidArgument", "Bucket POST must contain a policy and its signature fields.", { ArgumentName: b64 === undefined ? "policy" : "x-amz-signature" });
  }
  if (v4) {
    const need = (n: string) => {
      const v = fields.get(n);
      if (!v) throw s3err("InvalidArgument", `Bucket POST must contain a field named '${n}'.  If it is specified, please check the order of the fields.`, { ArgumentName: n });
      return v;
    };
    if (need("x-amz-algorithm") !== "AWS4-HMAC-SHA256") throw s3err("InvalidArgument", "Only AWS4-HMAC-SHA256 is supported as x-amz-algorithm.", { ArgumentName: "x-amz-algorithm" });
    const cred = need("x-amz-credential"), sig = need("x-amz-signature");
    need("x-amz-date");
    const parts = cred.split("/");
    if (parts.length !== 5 || parts[4] !== "aws4_request" || parts[3] !== "s3" || !/^\d{8}$/.test(parts[1]!)) {
      throw s3err("InvalidArgument", `Credential '${cred}' is malformed; expected "<YOUR-AKID>/YYYYMMDD/REGION/s3/aws4_request".`, { ArgumentName: "x-amz-credential" });
    }
    if (parts[2] !== policy.region) throw s3err("InvalidArgument", `The region '${parts[2]}' is wrong; expecting '${policy.region}'`, { ArgumentName: "x-amz-credential", Region: policy.region });
    const c = await creds.lookup(parts[0]!);
    if (!c) throw s3err("InvalidAccessKeyId", undefined, { AWSAccessKeyId: parts[0]! });
    const want = hmac(signingKey(c.secretKey, parts[1]!, parts[2]!, "s3"), b64).toString("hex");
    if (!equalHex(want, sig.toLowerCase())) throw s3err("SignatureDoesNotMatch", undefined, { AWSAccessKeyId: parts[0]!, StringToSign: b64 });
    return { ...c, accessKeyId: parts[0]! };
  }
  checkV2Allowed(policy);
  const id = fields.get("awsaccesskeyid"), sig = fields.get("signature");
  if (!id || !sig) throw s3err("InvalidArgument", "Bucket POST signed with Signature Version 2 needs both AWSAccessKeyId and signature.", { ArgumentName: id ? "signature" : "AWSAccessKeyId" });
  const c = await creds.lookup(id);
  if (!c) throw s3err("InvalidAccessKeyId", undefined, { AWSAccessKeyId: id });
  const want = Buffer.from(hmacSha1(c.secretKey, b64)), got = Buffer.from(sig);
  if (want.length !== got.length || !want.equals(got)) throw s3err("SignatureDoesNotMatch", undefined, { AWSAccessKeyId: id, StringToSign: b64 });
  return { ...c, accessKeyId: id };
}

/**
 * Holds the form to its policy: not expired, every condition met, every
 * field covered. `bucket` is the bucket the request names (the "bucket"
 * condition). Returns the size range the file must fall in.
 */
export function checkPolicy(p: PostPolicy, fields: Map<string, string>, bucket: string, now: number): { min: number; max: number } {
  if (now > p.expiration) throw denied("Policy expired.");
  const covered = new Set<string>();
  let min = 0, max = Number.MAX_SAFE_INTEGER;
  for (const c of p.conditions) {
    if (c.op === "content-length-range") {
      min = Math.max(min, c.min);
      max = Math.min(max, c.max);
      continue;
    }
    covered.add(c.field);
    const v = c.field === "bucket" ? bucket : fields.get(c.field) ?? "";
    const ok = c.op === "eq" ? v === c.value
      // A Content-Type may list several types; each must start with the prefix.
      : c.field === "content-type" ? v.split(",").every((t) => t.trim().startsWith(c.value)) : v.startsWith(c.value);
    if (!ok) throw denied(`Policy Condition failed: ${c.text}`);
  }
  for (const name of fields.keys()) {
    if (EXEMPT.has(name) || name.startsWith("x-ignore-") || covered.has(name)) continue;
    throw denied(`Extra input fields: ${name}`);
  }
  return { min, max };
}
