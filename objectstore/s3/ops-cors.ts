/**
 * CORS: Put/Get/DeleteBucketCors, the preflight OPTIONS request (answered
 * before authentication: a browser sends it without credentials), and the
 * Access-Control-* headers of an actual cross-origin request, set before the
 * operation runs so that its error answers carry them too (a browser script
 * can then read a 403 or 404). The matching itself is cors.ts.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { isBlobError, type BlobStore, type CorsRule } from "../blob/index.js";
import { readSmall } from "./body.js";
import { corsHeaders, corsXml, matchRule, MAX_CORS_XML, parseCorsXml, requestedHeaders, CORS_METHODS, type CorsRequest } from "./cors.js";
import { S3Error, s3err } from "./errors.js";
import { body, ownBucket, sendEmpty, sendXml, type Ctx } from "./http.js";

export async function putBucketCors(ctx: Ctx) {
  await ownBucket(ctx);
  const rules = parseCorsXml((await readSmall(body(ctx), MAX_CORS_XML)).toString("utf8"));
  await ctx.store.putBucketConfig(ctx.bucket!, "cors", rules);
  sendEmpty(ctx, 200);
}

export async function getBucketCors(ctx: Ctx) {
  await ownBucket(ctx);
  const rules = await ctx.store.getBucketConfig(ctx.bucket!, "cors");
  if (!rules?.length) throw s3err("NoSuchCORSConfiguration", undefined, { BucketName: ctx.bucket! });
  sendXml(ctx, 200, "CORSConfiguration", corsXml(rules));
}

export async function deleteBucketCors(ctx: Ctx) {
  await ownBucket(ctx);
  await ctx.store.putBucketConfig(ctx.bucket!, "cors", undefined);
  sendEmpty(ctx, 204);
}

const one = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);

/** The bucket's rules; undefined when it has none or does not exist (`missing` tells which). */
async function rulesOf(store: BlobStore, bucket: string): Promise<{ rules?: CorsRule[]; missing: boolean }> {
  try {
    const rules = await store.getBucketConfig(bucket, "cors");
    return { rules: rules?.length ? rules : undefined, missing: false };
  } catch (err) {
    if (isBlobError(err, "NoSuchBucket", "InvalidBucketName")) return { missing: true };
    throw err;
  }
}

function setAll(res: ServerResponse, headers: Record<string, string>): void {
  for (const [k, v] of Object.entries(headers)) {
    try { res.setHeader(k, v); } catch { /* a stored value HTTP cannot carry (a control character) is left out */ }
  }
}

/**
 * OPTIONS /bucket[/key]: 200 with the matching rule's headers, or the error
 * S3 answers (recorded against S3: no Origin → 400; no bucket, no
 * configuration or no matching rule → 403 AccessForbidden with Method and
 * ResourceType; Access-Control-Request-Method missing or not one S3 knows →
 * 400, as RGW and CloudServer answer).
 */
export async function preflight(store: BlobStore, req: IncomingMessage, res: ServerResponse, bucket: string, isObject: boolean): Promise<void> {
  const origin = one(req.headers.origin);
  if (origin === undefined) throw new S3Error("BadRequest", "Insufficient information. Origin request header needed.", {}, 400);
  const acrm = one(req.headers["access-control-request-method"]);
  const forbidden = (msg: string, resourceType: string) => new S3Error("AccessForbidden", `CORSResponse: ${msg}`, { Method: acrm ?? "OPTIONS", ResourceType: resourceType }, 403);
  const { rules, missing } = await rulesOf(store, bucket);
  if (missing) throw forbidden("Bucket not found", "BUCKET");
  if (!rules) throw forbidden("CORS is not enabled for this bucket.", "BUCKET");
  if (acrm === undefined || !CORS_METHODS.includes(acrm)) throw new S3Error("BadRequest", `Invalid Access-Control-Request-Method: ${acrm ?? "null"}`, {}, 400);
  const r: CorsRequest = { origin, method: acrm, headers: requestedHeaders(req.headers["access-control-request-headers"]) };
  const rule = matchRule(rules, r);
  if (!rule) {
    throw forbidden("This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.", isObject ? "OBJECT" : "BUCKET");
  }
  setAll(res, corsHeaders(rule, r));
  res.writeHead(200, { "Content-Length": 0 });
  res.end();
}

/**
 * An actual request with an Origin header: the matching rule's headers go on
 * the answer, whatever it turns out to be. No rule, no configuration or no
 * bucket: no headers, and the request goes on (S3 refuses only preflights).
 * A request without Origin never gets here (no configuration lookup).
 */
export async function applyCors(store: BlobStore, req: IncomingMessage, res: ServerResponse, bucket: string, origin: string): Promise<void> {
  let rules: CorsRule[] | undefined;
  try { rules = (await rulesOf(store, bucket)).rules; } catch { return; /* the operation itself will say what is wrong */ }
  if (!rules) return;
  const acrm = one(req.headers["access-control-request-method"]);
  const r: CorsRequest = { origin, method: acrm ?? req.method ?? "GET", headers: requestedHeaders(req.headers["access-control-request-headers"]) };
  const rule = matchRule(rules, r);
  if (rule) setAll(res, corsHeaders(rule, r));
}
