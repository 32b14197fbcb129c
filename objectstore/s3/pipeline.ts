/**
 * The steps one S3 request goes through, in order: a request id, routing
 * (bucket, key, operation), SigV4 authentication, the refusals that need an
 * authenticated caller, 100 Continue, then the operation's handler. Whatever
 * a step throws is answered by error-response.ts from the RequestState the
 * steps filled in so far.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { randomBytes } from "node:crypto";
import type { Config } from "../../config/index.js";
import type { Logger } from "../../core/index.js";
import type { BlobStore, KeyLocker } from "../blob/index.js";
import { s3err } from "./errors.js";
import type { Ctx } from "./http.js";
import * as attrOps from "./ops-attributes.js";
import * as bucketOps from "./ops-bucket.js";
import * as corsOps from "./ops-cors.js";
import * as lifecycleOps from "./ops-lifecycle.js";
import * as encryptionOps from "./ops-encryption.js";
import * as listOps from "./ops-list.js";
import * as mpOps from "./ops-multipart.js";
import * as objectOps from "./ops-object.js";
import * as tagOps from "./ops-tagging.js";
import * as accessOps from "./ops-access.js";
import { ANONYMOUS, authorize, hasNoCredentials, isAnonymous } from "./access.js";
import * as versionOps from "./ops-versions.js";
import * as postOps from "./ops-post.js";
import { newRequestId } from "./request-id.js";
import { operationOf, resolveTarget, type Target } from "./route.js";
import { authenticate, parseQuery, type AuthPolicy } from "./sigv4.js";
import type { SseContext } from "./sse-keys.js";
import type { CredentialLookup } from "./types.js";

const HANDLERS: Record<string, (ctx: Ctx) => Promise<void>> = {
  ListBuckets: bucketOps.listBuckets, CreateBucket: bucketOps.createBucket, HeadBucket: bucketOps.headBucket,
  DeleteBucket: bucketOps.deleteBucket, GetBucketLocation: bucketOps.getBucketLocation, GetBucketVersioning: versionOps.getBucketVersioning,
  GetBucketAcl: accessOps.getBucketAcl, PutBucketAcl: accessOps.putBucketAcl, GetBucketEmptyConfig: bucketOps.getBucketEmptyConfig,
  DeleteObjects: bucketOps.deleteObjects,
  PutBucketVersioning: versionOps.putBucketVersioning,
  ListObjects: listOps.listObjects, ListObjectsV2: listOps.listObjectsV2, ListObjectVersions: versionOps.listObjectVersions,
  PutObject: objectOps.putObject, GetObject: objectOps.getObject, HeadObject: objectOps.headObject, DeleteObject: objectOps.deleteObject,
  CopyObject: objectOps.copyObject, GetObjectAcl: accessOps.getObjectAcl, PutObjectAcl: accessOps.putObjectAcl,
  CreateMultipartUpload: mpOps.createMultipartUpload, UploadPart: mpOps.uploadPart, UploadPartCopy: mpOps.uploadPartCopy,
  CompleteMultipartUpload: mpOps.completeMultipartUpload, AbortMultipartUpload: mpOps.abortMultipartUpload,
  ListParts: mpOps.listParts, ListMultipartUploads: mpOps.listMultipartUploads,
  GetObjectAttributes: attrOps.getObjectAttributes,
  PutBucketCors: corsOps.putBucketCors, GetBucketCors: corsOps.getBucketCors, DeleteBucketCors: corsOps.deleteBucketCors,
  PutBucketLifecycleConfiguration: lifecycleOps.putBucketLifecycle, GetBucketLifecycleConfiguration: lifecycleOps.getBucketLifecycle, DeleteBucketLifecycle: lifecycleOps.deleteBucketLifecycle,
  GetObjectTagging: tagOps.getObjectTagging, PutObjectTagging: tagOps.putObjectTagging, DeleteObjectTagging: tagOps.deleteObjectTagging,
  GetBucketTagging: tagOps.getBucketTagging, PutBucketTagging: tagOps.putBucketTagging, DeleteBucketTagging: tagOps.deleteBucketTagging,
  PutBucketPolicy: accessOps.putBucketPolicy, GetBucketPolicy: accessOps.getBucketPolicy, DeleteBucketPolicy: accessOps.deleteBucketPolicy,
  GetBucketPolicyStatus: accessOps.getBucketPolicyStatus, PutPublicAccessBlock: accessOps.putPublicAccessBlock,
  GetPublicAccessBlock: accessOps.getPublicAccessBlock, DeletePublicAccessBlock: accessOps.deletePublicAccessBlock,
  PutBucketEncryption: encryptionOps.putBucketEncryption, GetBucketEncryption: encryptionOps.getBucketEncryption, DeleteBucketEncryption: encryptionOps.deleteBucketEncryption,
};

export interface PipelineDeps {
  store: BlobStore;
  credentials: CredentialLookup;
  config: Config;
  log: Logger;
  policy: AuthPolicy;
  sse: SseContext;
  writeLocks: KeyLocker;
}

/** What is known of a request so far; the error answer and metrics read it whichever step failed. */
export interface RequestState {
  requestId: string;
  /** The S3 operation (metrics label); "Unknown" until routed. */
  op: string;
  /** /bucket/key as the error document names it; "/" until routed. */
  resource: string;
  /** The client sent Expect: 100-continue and still waits for it: the body is asked for only once auth passed. */
  expectContinue: boolean;
  /** Set once the handler is about to run (it counts the bytes in and out). */
  ctx?: Ctx;
}

/** Gives the request its id and the headers every answer carries, errors included. */
export function beginRequest(res: ServerResponse, expectContinue: boolean): RequestState {
  const requestId = newRequestId();
  res.setHeader("x-amz-request-id", requestId);
  res.setHeader("x-amz-id-2", randomBytes(18).toString("base64"));
  res.setHeader("Server", "thoc");
  return { requestId, op: "Unknown", resource: "/", expectContinue };
}

export async function runPipeline(deps: PipelineDeps, req: IncomingMessage, res: ServerResponse, st: RequestState): Promise<void> {
  const { rawPath, rawQuery, query } = splitUrl(req.url ?? "/");
  const target = resolveTarget(req.headers.host, rawPath, deps.config.s3.domain);
  st.resource = `/${target.bucket ?? ""}${target.key !== undefined ? "/" + target.key : ""}`;
  const method = req.method ?? "GET";
  st.op = operationOf(method, target, query, req.headers["x-amz-copy-source"] !== undefined);
  // CORS: a preflight is answered from the bucket's rules, unauthenticated; an actual request with an
  // Origin gets its Access-Control-* headers before anything can fail (they stay on error answers).
  if (st.op === "CorsPreflight") return corsOps.preflight(deps.store, req, res, target.bucket!, target.key !== undefined);
  const origin = req.headers.origin;
  if (origin !== undefined && target.bucket) await corsOps.applyCors(deps.store, req, res, target.bucket, origin);
  // A browser form upload (POST Object) is signed by its form's policy fields, which its handler verifies.
  // No credentials at all is an anonymous request (ACLs and policies may let it in); anything signed must verify.
  const auth = st.op === "PostObject" ? postOps.UNVERIFIED
    : hasNoCredentials(req.headers, query) ? ANONYMOUS
    : await authenticate({
      method, rawPath, rawQuery, headers: req.headersDistinct, plainHeaders: req.headers, virtualHostBucket: target.virtualHost ? target.bucket : undefined,
    }, deps.credentials, deps.policy);
  refuseUnservable(st, method, target, query);
  // Authorize before 100 Continue: a refused upload never sends its body.
  // A form upload is authorized by its handler once the form's signature names the signer (the bucket's owner).
  const access = target.bucket !== undefined && st.op !== "CreateBucket" && st.op !== "PostObject"
    ? await authorize({ op: st.op, bucket: target.bucket, key: target.key, auth, store: deps.store, req, query })
    : undefined;
  if (!access && isAnonymous(auth) && st.op !== "PostObject") throw s3err("AccessDenied", "Anonymous requests may only read or write objects a bucket's ACL or policy opens to everyone; sign the request with AWS Signature Version 4.");
  if (st.expectContinue) {
    res.writeContinue();
    st.expectContinue = false;
  }
  st.ctx = { req, res, requestId: st.requestId, op: st.op, bucket: target.bucket, key: target.key, query, auth, access, store: deps.store, config: deps.config, log: deps.log, sse: deps.sse, writeLocks: deps.writeLocks, bytesIn: 0, bytesOut: 0 };
  if (st.op === "PostObject") await postOps.postObject(st.ctx, deps.credentials, deps.policy);
  else await HANDLERS[st.op]!(st.ctx);
}

/** Path and query as sent (an absolute-form URL loses its scheme and host); the first value of a repeated parameter wins. */
function splitUrl(raw: string): { rawPath: string; rawQuery: string; query: Map<string, string> } {
  const url = raw.startsWith("/") ? raw : raw.replace(/^[a-z]+:\/\/[^/]*/i, "") || "/";
  const qi = url.indexOf("?");
  const rawPath = qi < 0 ? url : url.slice(0, qi), rawQuery = qi < 0 ? "" : url.slice(qi + 1);
  const query = new Map<string, string>();
  for (const [k, v] of parseQuery(rawQuery)) if (!query.has(k)) query.set(k, v);
  return { rawPath, rawQuery, query };
}

/** Requests no handler serves, and keys over S3's 1024 bytes; checked after authentication, so a bad signature is what a client hears first. */
function refuseUnservable(st: RequestState, method: string, target: Target, query: Map<string, string>): void {
  if (st.op === "MethodNotAllowed") throw s3err("MethodNotAllowed", undefined, { Method: method, ResourceType: target.key !== undefined ? "OBJECT" : target.bucket ? "BUCKET" : "SERVICE" });
  if (st.op === "NotImplemented") throw s3err("NotImplemented", `${method} ${[...query.keys()].join("&") || st.resource} is not implemented by this store.`);
  if (target.key !== undefined && Buffer.byteLength(target.key) > 1024) throw s3err("KeyTooLongError", undefined, { Size: String(Buffer.byteLength(target.key)), MaxSizeAllowed: "1024" });
}
