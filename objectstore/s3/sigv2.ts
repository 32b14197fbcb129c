/**
 * AWS Signature Version 2 as S3 uses it (HMAC-SHA1 over VERB, Content-MD5,
 * Content-Type, Date or Expires, the x-amz-* headers and the resource): the
 * `Authorization: AWS AKID:signature` header and presigned query parameters
 * (AWSAccessKeyId, Expires, Signature). Still what aws-cli v1 presigns with by
 * default and what s3cmd signs with, so it is served unless s3.sigV2 is off.
 *
 * sigv4.ts's authenticate() dispatches here; this file imports nothing of it
 * (no import circle), so the request, policy and result shapes below are the
 * parts of sigv4.ts's AuthRequest, AuthPolicy and AuthResult it needs.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { s3err } from "./errors.js";
import type { CredentialLookup } from "./types.js";

/** The query parameters S3 signs as part of the resource (sorted, values decoded); every other parameter is left out. */
const SUB_RESOURCES = new Set([
  "accelerate", "acl", "analytics", "cors", "defaultObjectAcl", "delete", "encryption", "inventory", "lifecycle", "location", "logging",
  "metrics", "notification", "object-lock", "partNumber", "policy", "publicAccessBlock", "replication", "requestPayment", "restore",
  "select", "select-type", "storageClass", "tagging", "torrent", "uploadId", "uploads", "versionId", "versioning", "versions", "website",
  "response-cache-control", "response-content-disposition", "response-content-encoding", "response-content-language",
  "response-content-type", "response-expires",
]);

export interface V2Request {
  method: string;
  rawPath: string;
  rawQuery: string;
  headers: NodeJS.Dict<string[]>;
  plainHeaders: NodeJS.Dict<string | string[]>;
  /** The bucket named by the Host header (virtual-host style): the resource signed is /bucket + path. */
  virtualHostBucket?: string;
}

export interface V2Policy { maxClockSkewMs: number; now?: () => number; sigV2?: boolean }

export interface V2Result {
  accessKeyId: string;
  owner: string;
  /** A V2 signature covers no payload (bodies are never aws-chunked): the body is taken as UNSIGNED-PAYLOAD. */
  payload: "UNSIGNED-PAYLOAD";
  /** No chunk signatures follow a V2 signature; the empty chain is never used (payload is not STREAMING-*). */
  chain: { key: Buffer; amzDate: string; scope: string; seed: string };
}

const one = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);
const decode = (s: string) => { try { return decodeURIComponent(s); } catch { return s; } };

/** The query as [decoded name, decoded value, had '='] triples, in order. */
function queryPairs(raw: string): [string, string, boolean][] {
  return raw.split("&").filter(Boolean).map((p) => {
    const i = p.indexOf("=");
    return i < 0 ? [decode(p), "", false] : [decode(p.slice(0, i)), decode(p.slice(i + 1)), true];
  });
}

/** True when the request is signed with V2: an `AWS ` Authorization header, or V2 presign parameters without an Authorization. */
export function isSigV2(r: Pick<V2Request, "plainHeaders" | "rawQuery">): boolean {
  const auth = one(r.plainHeaders.authorization);
  if (auth !== undefined) return auth.startsWith("AWS ");
  return queryPairs(r.rawQuery).some(([k]) => k === "AWSAccessKeyId" || k === "Signature");
}

export const hmacSha1 = (secret: string, data: string) => createHmac("sha1", secret).update(data, "utf8").digest("base64");

/** S3's CanonicalizedResource: the path as sent (bucket prefixed under virtual-host addressing) and the sub-resources. */
export function canonicalResource(rawPath: string, rawQuery: string, virtualHostBucket?: string): string {
  let res = (virtualHostBucket !== undefined ? `/${virtualHostBucket}` : "") + (rawPath || "/");
  const subs = queryPairs(rawQuery).filter(([k]) => SUB_RESOURCES.has(k)).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  if (subs.length) res += "?" + subs.map(([k, v, eq]) => (eq && v !== "" ? `${k}=${v}` : k)).join("&");
  return res;
}

/** x-amz-* headers: names lower-cased and sorted, repeated headers comma-joined, folding whitespace made one space. */
export function canonicalAmzHeaders(headers: Iterable<[string, string[]]>): string {
  const map = new Map<string, string[]>();
  for (const [name, values] of headers) {
    const n = name.toLowerCase();
    if (!n.startsWith("x-amz-")) continue;
    const cur = map.get(n) ?? [];
    cur.push(...values.map((v) => v.replace(/\s*\r?\n\s*/g, " ").trim()));
    map.set(n, cur);
  }
  return [...map.keys()].sort().map((n) => `${n}:${map.get(n)!.join(",")}\n`).join("");
}

export interface StringToSignInput {
  method: string;
  contentMd5?: string;
  contentType?: string;
  /** The Date header (empty when x-amz-date is sent), or Expires (seconds since the epoch) for a presigned URL. */
  date: string;
  amzHeaders: Iterable<[string, string[]]>;
  resource: string;
}

export function stringToSign(i: StringToSignInput): string {
  return `${i.method}\n${i.contentMd5 ?? ""}\n${i.contentType ?? ""}\n${i.date}\n${canonicalAmzHeaders(i.amzHeaders)}${i.resource}`;
}

/** An x-amz-date or Date value: RFC 7231 (and RFC 850/asctime), or the ISO 8601 basic form some clients send; NaN when neither. */
function parseHttpDate(s: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  if (m) return Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!);
  return Date.parse(s);
}

function equalB64(a: string, b: string): boolean {
  const x = Buffer.from(a), y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

const refusedV2 = () => s3err("InvalidRequest", "AWS Signature Version 2 is turned off on this endpoint (s3.sigV2: false); sign requests with AWS Signature Version 4 (AWS4-HMAC-SHA256).");

/** Refuses a V2-signed form upload (POST Object) as a V2-signed request is refused, when V2 is off. */
export function checkV2Allowed(policy: V2Policy): void {
  if (policy.sigV2 === false) throw refusedV2();
}

/** Verifies a V2 signature (header or presigned); throws the S3 error a client should see. */
export async function authenticateV2(r: V2Request, creds: CredentialLookup, policy: V2Policy): Promise<V2Result> {
  checkV2Allowed(policy);
  const q = queryPairs(r.rawQuery);
  const qget = (name: string) => q.find(([k]) => k === name)?.[1];
  const auth = one(r.plainHeaders.authorization);
  const now = (policy.now ?? Date.now)();
  let accessKeyId: string, signature: string, date: string;
  const amz: [string, string[]][] = Object.entries(r.headers).filter((e): e is [string, string[]] => e[1] !== undefined);
  let contentMd5 = one(r.plainHeaders["content-md5"]), contentType = one(r.plainHeaders["content-type"]);
  const variants: { date: string; amz: [string, string[]][] }[] = [];
  if (auth !== undefined) {
    const m = /^AWS ([^:\s]+):(\S+)$/.exec(auth.trim());
    if (!m) throw s3err("InvalidArgument", "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature", { ArgumentName: "Authorization", ArgumentValue: auth.slice(0, 64) });
    [, accessKeyId, signature] = m as unknown as [string, string, string];
    const amzDate = one(r.plainHeaders["x-amz-date"]), httpDate = one(r.plainHeaders.date);
    const sent = amzDate ?? httpDate;
    const t = sent === undefined ? NaN : parseHttpDate(sent);
    if (Number.isNaN(t)) throw s3err("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header");
    if (Math.abs(now - t) > policy.maxClockSkewMs) {
      throw s3err("RequestTimeTooSkewed", undefined, { RequestTime: sent!, ServerTime: new Date(now).toISOString(), MaxAllowedSkewMilliseconds: String(policy.maxClockSkewMs) });
    }
    // S3 signs an empty Date line when x-amz-date is sent. AWS's own guide (its Delete example) signs x-amz-date's
    // value in the Date line instead, without an x-amz-date header line; some signers put the Date header there.
    if (amzDate === undefined) variants.push({ date: httpDate!, amz });
    else {
      variants.push({ date: "", amz }, { date: amzDate, amz: amz.filter(([k]) => k !== "x-amz-date") });
      if (httpDate !== undefined) variants.push({ date: httpDate, amz });
    }
  } else {
    const id = qget("AWSAccessKeyId"), sig = qget("Signature"), expires = qget("Expires");
    if (!id || !sig || expires === undefined) throw s3err("AccessDenied", "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters");
    if (!/^\d{1,12}$/.test(expires)) throw s3err("AccessDenied", "Invalid date (should be seconds since epoch)", { Expires: expires });
    if (now > Number(expires) * 1000) throw s3err("AccessDenied", "Request has expired", { Expires: new Date(Number(expires) * 1000).toISOString(), ServerTime: new Date(now).toISOString() });
    accessKeyId = id;
    signature = sig;
    // Presigners (botocore) move x-amz-*, Content-MD5 and Content-Type into the query; they are signed as headers.
    for (const [k, v] of q) if (k.toLowerCase().startsWith("x-amz-")) amz.push([k.toLowerCase(), [v]]);
    variants.push({ date: expires, amz });
    contentMd5 = qget("content-md5") ?? qget("Content-MD5") ?? contentMd5;
    contentType = qget("content-type") ?? qget("Content-Type") ?? contentType;
  }
  const cred = await creds.lookup(accessKeyId);
  if (!cred) throw s3err("InvalidAccessKeyId", undefined, { AWSAccessKeyId: accessKeyId });

  const resources = [canonicalResource(r.rawPath, r.rawQuery, r.virtualHostBucket)];
  // A bucket addressed as "/bucket" is signed as "/bucket/" by some clients (and the other way round).
  const bare = r.rawPath.replace(/\/$/, "");
  if (r.virtualHostBucket === undefined && bare.lastIndexOf("/") === 0 && bare.length > 1) {
    resources.push(canonicalResource(r.rawPath.endsWith("/") ? bare : bare + "/", r.rawQuery));
  }
  let first: string | undefined;
  for (const { date, amz: amzHeaders } of variants) {
    for (const resource of resources) {
      const sts = stringToSign({ method: r.method, contentMd5, contentType, date, amzHeaders, resource });
      first ??= sts;
      if (equalB64(hmacSha1(cred.secretKey, sts), signature)) {
        return { accessKeyId, owner: cred.owner, payload: "UNSIGNED-PAYLOAD", chain: { key: Buffer.alloc(0), amzDate: "", scope: "", seed: "" } };
      }
    }
  }
  throw s3err("SignatureDoesNotMatch", undefined, {
    AWSAccessKeyId: accessKeyId, StringToSign: first!, SignatureProvided: signature,
    StringToSignBytes: [...Buffer.from(first!)].map((b) => b.toString(16).padStart(2, "0")).join(" "),
  });
}
