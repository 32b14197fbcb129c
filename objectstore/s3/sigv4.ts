/**
 * AWS Signature Version 4 as S3 uses it: the Authorization header, presigned
 * query parameters (X-Amz-*), and the seed a streaming (aws-chunked) body's
 * chunk signatures chain from. S3 signs the path URI-encoded once (not twice,
 * unlike other AWS services).
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import { s3err } from "./errors.js";
import { authenticateV2, isSigV2 } from "./sigv2.js";
import type { CredentialLookup } from "./types.js";

export const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
export const UNSIGNED = "UNSIGNED-PAYLOAD";
export const STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
export const STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
export const STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
const MAX_PRESIGN_SECONDS = 7 * 24 * 3600;

export const sha256hex = (d: string | Uint8Array) => createHash("sha256").update(d).digest("hex");
export const hmac = (key: Uint8Array | string, d: string) => createHmac("sha256", key).update(d).digest();

const UNRESERVED = new Uint8Array(256);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~") UNRESERVED[c.charCodeAt(0)] = 1;
const HEX = Array.from({ length: 256 }, (_, b) => "%" + b.toString(16).toUpperCase().padStart(2, "0"));

/** RFC 3986 encoding as SigV4 wants it: everything but A-Z a-z 0-9 - . _ ~ (and / in paths). */
export function uriEncode(s: string, keepSlash: boolean): string {
  let out = "";
  for (const b of Buffer.from(s, "utf8")) out += UNRESERVED[b] || (keepSlash && b === 47) ? String.fromCharCode(b) : HEX[b]!;
  return out;
}

export function safeDecode(s: string): string {
  try { return decodeURIComponent(s); } catch { return s; }
}

/** The raw query as [decoded name, decoded value] pairs, in order. */
export function parseQuery(raw: string): [string, string][] {
  if (!raw) return [];
  return raw.split("&").filter(Boolean).map((p) => {
    const i = p.indexOf("=");
    return i < 0 ? [safeDecode(p), ""] : [safeDecode(p.slice(0, i)), safeDecode(p.slice(i + 1))];
  });
}

function canonicalQuery(pairs: [string, string][]): string {
  return pairs.filter(([k]) => k !== "X-Amz-Signature")
    .map(([k, v]) => [uriEncode(k, false), uriEncode(v, false)] as const)
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`).join("&");
}

function canonicalHeaders(headers: NodeJS.Dict<string[]>, signed: string[]): string {
  return signed.map((h) => `${h}:${(headers[h] ?? []).map((v) => v.trim().replace(/\s+/g, " ")).join(",")}\n`).join("");
}

const keyCache = new Map<string, Buffer>();
export function signingKey(secret: string, date: string, region: string, service: string): Buffer {
  const id = `${sha256hex(secret)}/${date}/${region}/${service}`;
  let k = keyCache.get(id);
  if (!k) {
    k = hmac(hmac(hmac(hmac("AWS4" + secret, date), region), service), "aws4_request");
    if (keyCache.size > 1000) keyCache.clear();
    keyCache.set(id, k);
  }
  return k;
}

/** "20130524T000000Z" → ms since the epoch; NaN when malformed. */
export function parseAmzDate(s: string | undefined): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s ?? "");
  return m ? Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!) : NaN;
}
export const toAmzDate = (ms: number) => new Date(ms).toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");

export interface AuthRequest {
  method: string;
  /** The path exactly as sent (still percent-encoded). */
  rawPath: string;
  rawQuery: string;
  headers: NodeJS.Dict<string[]>;
  plainHeaders: IncomingHttpHeaders;
  /** The bucket the Host header names (virtual-host style): SigV2 signs it as part of the resource. */
  virtualHostBucket?: string;
}

export interface AuthResult {
  accessKeyId: string;
  owner: string;
  /** What the signature says about the payload: a hex SHA-256, UNSIGNED-PAYLOAD or a STREAMING-* mode. */
  payload: string;
  /** For aws-chunked bodies: the chain of chunk signatures starts at `seed`. */
  chain: { key: Buffer; amzDate: string; scope: string; seed: string };
}

interface Parsed {
  accessKeyId: string; date: string; region: string; service: string; signed: string[]; signature: string;
  amzDate: string; payload: string; presigned: boolean; expires?: number;
}

function parseCredential(cred: string, code: string): { accessKeyId: string; date: string; region: string; service: string } {
  const parts = cred.split("/");
  if (parts.length !== 5 || parts[4] !== "aws4_request" || !/^\d{8}$/.test(parts[1]!)) {
    throw s3err(code, `Credential '${cred}' is malformed; expected "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".`);
  }
  return { accessKeyId: parts[0]!, date: parts[1]!, region: parts[2]!, service: parts[3]! };
}

function parseRequest(r: AuthRequest, query: Map<string, string>): Parsed | undefined {
  const auth = r.plainHeaders.authorization;
  if (auth) {
    if (!auth.startsWith("AWS4-HMAC-SHA256 ")) {
      if (auth.startsWith("AWS ")) throw s3err("InvalidRequest", "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.");
      throw s3err("AuthorizationHeaderMalformed", "The authorization header is malformed; expected AWS4-HMAC-SHA256.");
    }
    const fields = new Map<string, string>();
    for (const part of auth.slice(17).split(",")) {
      const i = part.indexOf("=");
      if (i > 0) fields.set(part.slice(0, i).trim(), part.slice(i + 1).trim());
    }
    const cred = fields.get("Credential"), sh = fields.get("SignedHeaders"), sig = fields.get("Signature");
    if (!cred || !sh || !sig) throw s3err("AuthorizationHeaderMalformed", "The authorization header needs Credential, SignedHeaders and Signature.");
    const c = parseCredential(cred, "AuthorizationHeaderMalformed");
    const one = (n: string) => { const v = r.plainHeaders[n]; return Array.isArray(v) ? v[0] : v; };
    let amzDate = one("x-amz-date");
    if (!amzDate && r.plainHeaders.date) {
      const t = Date.parse(r.plainHeaders.date);
      if (!Number.isNaN(t)) amzDate = toAmzDate(t);
    }
    if (!amzDate || Number.isNaN(parseAmzDate(amzDate))) throw s3err("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header");
    const payload = one("x-amz-content-sha256");
    if (!payload) throw s3err("InvalidRequest", "Missing required header for this request: x-amz-content-sha256");
    if (!/^[0-9a-f]{64}$/.test(payload) && ![UNSIGNED, STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER].includes(payload)) {
      if (payload.startsWith("STREAMING-")) throw s3err("NotImplemented", `x-amz-content-sha256 ${payload} is not supported.`);
      throw s3err("InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-* or a hex SHA-256.", { ArgumentName: "x-amz-content-sha256" });
    }
    return { ...c, signed: sh.split(";"), signature: sig, amzDate, payload, presigned: false };
  }
  if (query.has("X-Amz-Signature") || query.has("X-Amz-Credential") || query.has("X-Amz-Algorithm")) {
    const bad = (m: string) => s3err("AuthorizationQueryParametersError", m);
    if (query.get("X-Amz-Algorithm") !== "AWS4-HMAC-SHA256") throw bad("X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"");
    for (const p of ["X-Amz-Credential", "X-Amz-Signature", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Expires"]) {
      if (!query.get(p)) throw bad(`Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters (${p} is missing).`);
    }
    const c = parseCredential(query.get("X-Amz-Credential")!, "AuthorizationQueryParametersError");
    const amzDate = query.get("X-Amz-Date")!;
    if (Number.isNaN(parseAmzDate(amzDate))) throw bad("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"");
    const expStr = query.get("X-Amz-Expires")!;
    const expires = /^\d+$/.test(expStr) ? Number(expStr) : NaN;
    if (!(expires >= 1)) throw bad("X-Amz-Expires must be a whole number of seconds from 1 to 604800.");
    if (expires > MAX_PRESIGN_SECONDS) throw bad("X-Amz-Expires must be less than a week (in seconds) that is 604800");
    return {
      ...c, signed: query.get("X-Amz-SignedHeaders")!.split(";"), signature: query.get("X-Amz-Signature")!, amzDate,
      payload: query.get("X-Amz-Content-Sha256") ?? query.get("x-amz-content-sha256") ?? UNSIGNED, presigned: true, expires,
    };
  }
  return undefined;
}

function equalHex(a: string, b: string): boolean {
  const x = Buffer.from(a), y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export interface AuthPolicy {
  region: string; maxClockSkewMs: number; now?: () => number;
  /** Serve SigV2 (sigv2.ts); false refuses it with a message that says to use SigV4 (s3.sigV2). */
  sigV2?: boolean;
}

/** Verifies the request's signature; throws the S3 error a client should see. Anonymous → AccessDenied. */
export async function authenticate(r: AuthRequest, creds: CredentialLookup, policy: AuthPolicy): Promise<AuthResult> {
  if (isSigV2(r)) return authenticateV2(r, creds, policy);
  const query = new Map(parseQuery(r.rawQuery));
  const p = parseRequest(r, query);
  if (!p) throw s3err("AccessDenied", "Anonymous access is not allowed; sign the request with AWS Signature Version 4.");
  if (p.service !== "s3") throw s3err(p.presigned ? "AuthorizationQueryParametersError" : "AuthorizationHeaderMalformed", `The credential scope service must be 's3', not '${p.service}'.`);
  if (p.region !== policy.region) {
    throw s3err(p.presigned ? "AuthorizationQueryParametersError" : "AuthorizationHeaderMalformed",
      `The authorization header is malformed; the region '${p.region}' is wrong; expecting '${policy.region}'`, { Region: policy.region });
  }
  if (p.amzDate.slice(0, 8) !== p.date) {
    throw s3err(p.presigned ? "AuthorizationQueryParametersError" : "AuthorizationHeaderMalformed", `The credential date ${p.date} does not match the request date ${p.amzDate.slice(0, 8)}.`);
  }
  if (!p.signed.includes("host")) throw s3err("AccessDenied", "The host header must be signed.");
  const cred = await creds.lookup(p.accessKeyId);
  if (!cred) throw s3err("InvalidAccessKeyId", undefined, { AWSAccessKeyId: p.accessKeyId });

  const now = (policy.now ?? Date.now)();
  const t = parseAmzDate(p.amzDate);
  if (p.presigned) {
    if (t - now > policy.maxClockSkewMs) throw s3err("AccessDenied", "Request is not valid yet", { ServerTime: new Date(now).toISOString() });
    if (now > t + p.expires! * 1000) {
      throw s3err("AccessDenied", "Request has expired", { "X-Amz-Expires": String(p.expires), Expires: new Date(t + p.expires! * 1000).toISOString(), ServerTime: new Date(now).toISOString() });
    }
  } else if (Math.abs(now - t) > policy.maxClockSkewMs) {
    throw s3err("RequestTimeTooSkewed", undefined, { RequestTime: p.amzDate, ServerTime: new Date(now).toISOString(), MaxAllowedSkewMilliseconds: String(policy.maxClockSkewMs) });
  }

  const scope = `${p.date}/${p.region}/${p.service}/aws4_request`;
  const key = signingKey(cred.secretKey, p.date, p.region, p.service);
  const cq = canonicalQuery([...parseQuery(r.rawQuery)]);
  const ch = canonicalHeaders(r.headers, p.signed);
  const rawPath = r.rawPath || "/";
  const paths = [rawPath.split("/").map((s) => uriEncode(safeDecode(s), false)).join("/")];
  if (paths[0] !== rawPath) paths.push(rawPath);
  // Presigners that sign the empty body's hash instead of UNSIGNED-PAYLOAD (a bare SigV4 presign) are
  // accepted too; the body is then held to that hash, so such a URL can only send an empty body.
  const payloads = [p.payload];
  if (p.presigned && !query.has("X-Amz-Content-Sha256") && !query.has("x-amz-content-sha256")) payloads.push(EMPTY_SHA256);
  for (const payload of payloads) {
    for (const path of paths) {
      const creq = `${r.method}\n${path}\n${cq}\n${ch}\n${p.signed.join(";")}\n${payload}`;
      const sts = `AWS4-HMAC-SHA256\n${p.amzDate}\n${scope}\n${sha256hex(creq)}`;
      const sig = hmac(key, sts).toString("hex");
      if (equalHex(sig, p.signature.toLowerCase())) {
        return { accessKeyId: p.accessKeyId, owner: cred.owner, payload, chain: { key, amzDate: p.amzDate, scope, seed: sig } };
      }
    }
  }
  throw s3err("SignatureDoesNotMatch", undefined, { AWSAccessKeyId: p.accessKeyId });
}

/** The signature of one aws-chunked chunk, given the previous signature in the chain. */
export function chunkSignature(c: AuthResult["chain"], prev: string, chunkSha256: string): string {
  return hmac(c.key, `AWS4-HMAC-SHA256-PAYLOAD\n${c.amzDate}\n${c.scope}\n${prev}\n${EMPTY_SHA256}\n${chunkSha256}`).toString("hex");
}

/** The signature of the trailing headers of a signed aws-chunked body. */
export function trailerSignature(c: AuthResult["chain"], prev: string, canonicalTrailers: string): string {
  return hmac(c.key, `AWS4-HMAC-SHA256-TRAILER\n${c.amzDate}\n${c.scope}\n${prev}\n${sha256hex(canonicalTrailers)}`).toString("hex");
}

export { equalHex };
