/**
 * The S3 HTTP server: one request → request id, routing, SigV4 auth, the
 * operation's handler, and an S3 XML error for anything thrown. Malformed
 * HTTP (oversize headers included) is answered on the raw socket, since Node
 * never hands such requests to the handler.
 */
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import { randomBytes } from "node:crypto";
import type { Duplex } from "node:stream";
import { listen } from "../../core/index.js";
import { s3err, toS3Error, type S3Error } from "./errors.js";
import type { Ctx } from "./http.js";
import { createS3Metrics } from "./metrics.js";
import * as bucketOps from "./ops-bucket.js";
import * as listOps from "./ops-list.js";
import * as mpOps from "./ops-multipart.js";
import * as objectOps from "./ops-object.js";
import { operationOf, resolveTarget } from "./route.js";
import { authenticate, parseQuery } from "./sigv4.js";
import type { S3Server, S3ServerOptions } from "./types.js";
import { esc, XML_DECL } from "./xml.js";

const HANDLERS: Record<string, (ctx: Ctx) => Promise<void>> = {
  ListBuckets: bucketOps.listBuckets, CreateBucket: bucketOps.createBucket, HeadBucket: bucketOps.headBucket,
  DeleteBucket: bucketOps.deleteBucket, GetBucketLocation: bucketOps.getBucketLocation, GetBucketVersioning: bucketOps.getBucketVersioning,
  GetBucketAcl: bucketOps.getBucketAcl, PutBucketAcl: bucketOps.putBucketAcl, GetBucketEmptyConfig: bucketOps.getBucketEmptyConfig,
  DeleteObjects: bucketOps.deleteObjects,
  ListObjects: listOps.listObjects, ListObjectsV2: listOps.listObjectsV2, ListObjectVersions: listOps.listObjectVersions,
  PutObject: objectOps.putObject, GetObject: objectOps.getObject, HeadObject: objectOps.headObject, DeleteObject: objectOps.deleteObject,
  CopyObject: objectOps.copyObject, GetObjectAcl: objectOps.getObjectAcl, PutObjectAcl: objectOps.putObjectAcl, GetObjectTagging: objectOps.getObjectTagging,
  CreateMultipartUpload: mpOps.createMultipartUpload, UploadPart: mpOps.uploadPart, UploadPartCopy: mpOps.uploadPartCopy,
  CompleteMultipartUpload: mpOps.completeMultipartUpload, AbortMultipartUpload: mpOps.abortMultipartUpload,
  ListParts: mpOps.listParts, ListMultipartUploads: mpOps.listMultipartUploads,
};

/** Bodies left unread after an error are drained up to this size so the connection can be reused; beyond, it is closed. */
const DRAIN_LIMIT = 1 << 20;

const KEEP_ON_ERROR = new Set(["x-amz-request-id", "x-amz-id-2", "server"]);

let seq = 0;
const ridPrefix = randomBytes(4).toString("hex").toUpperCase();
const newRequestId = () => ridPrefix + (++seq).toString(16).toUpperCase().padStart(8, "0");

function errorXml(e: S3Error, resource: string, requestId: string): string {
  const extra = Object.entries(e.extra).map(([k, v]) => `<${k}>${esc(v)}</${k}>`).join("");
  return `${XML_DECL}<Error><Code>${esc(e.code)}</Code><Message>${esc(e.message)}</Message>${extra}<Resource>${esc(resource)}</Resource><RequestId>${requestId}</RequestId></Error>`;
}

export function createS3Server(opts: S3ServerOptions): S3Server {
  const { store, credentials, config, log } = opts;
  const metrics = createS3Metrics(opts.metrics);
  const policy = { region: config.s3.region, maxClockSkewMs: config.s3.maxClockSkew, now: opts.now };
  let inflight = 0;
  let drained: (() => void) | undefined;

  /** `expectContinue`: the client sent Expect: 100-continue and waits; the body is asked for only once auth passed. */
  async function handle(req: IncomingMessage, res: ServerResponse, expectContinue = false): Promise<void> {
    const t0 = process.hrtime.bigint();
    const requestId = newRequestId();
    res.setHeader("x-amz-request-id", requestId);
    res.setHeader("x-amz-id-2", randomBytes(18).toString("base64"));
    res.setHeader("Server", "thoc");
    inflight++;
    metrics.inflight.inc();
    let op = "Unknown";
    let resource = "/";
    let ctx: Ctx | undefined;
    let errorCode: string | undefined;
    try {
      let url = req.url ?? "/";
      if (!url.startsWith("/")) url = url.replace(/^[a-z]+:\/\/[^/]*/i, "") || "/";
      const qi = url.indexOf("?");
      const rawPath = qi < 0 ? url : url.slice(0, qi), rawQuery = qi < 0 ? "" : url.slice(qi + 1);
      const query = new Map<string, string>();
      for (const [k, v] of parseQuery(rawQuery)) if (!query.has(k)) query.set(k, v);
      const target = resolveTarget(req.headers.host, rawPath, config.s3.domain);
      resource = `/${target.bucket ?? ""}${target.key !== undefined ? "/" + target.key : ""}`;
      const method = req.method ?? "GET";
      op = operationOf(method, target, query, req.headers["x-amz-copy-source"] !== undefined);
      const auth = await authenticate({ method, rawPath, rawQuery, headers: req.headersDistinct, plainHeaders: req.headers }, credentials, policy);
      if (op === "MethodNotAllowed") throw s3err("MethodNotAllowed", undefined, { Method: method, ResourceType: target.key !== undefined ? "OBJECT" : target.bucket ? "BUCKET" : "SERVICE" });
      if (op === "NotImplemented") throw s3err("NotImplemented", `${method} ${[...query.keys()].join("&") || resource} is not implemented by this store.`);
      if (target.key !== undefined && Buffer.byteLength(target.key) > 1024) throw s3err("KeyTooLongError", undefined, { Size: String(Buffer.byteLength(target.key)), MaxSizeAllowed: "1024" });
      if (expectContinue) {
        res.writeContinue();
        expectContinue = false;
      }
      ctx = { req, res, requestId, op, bucket: target.bucket, key: target.key, query, auth, store, config, log, bytesIn: 0, bytesOut: 0 };
      await HANDLERS[op]!(ctx);
    } catch (err) {
      const { error, internal } = toS3Error(err);
      errorCode = error.code;
      const clientGone = res.destroyed || req.destroyed || (err as { code?: string }).code === "ERR_STREAM_PREMATURE_CLOSE";
      if (clientGone) errorCode = "ClientClosed";
      else if (internal) log.error({ err, op, requestId }, "s3 request failed");
      else log.debug({ op, requestId, code: error.code, msg: error.message }, "s3 error");
      if (res.headersSent) {
        res.destroy();
      } else {
        // Headers an operation set before failing (ETag, checksums...) do not belong on the error.
        for (const h of res.getHeaderNames()) if (!KEEP_ON_ERROR.has(h)) res.removeHeader(h);
        const data = req.method === "HEAD" || error.status === 304 ? Buffer.alloc(0) : Buffer.from(errorXml(error, resource, requestId));
        const left = Number(req.headers["content-length"] ?? NaN);
        // A body we will not read is drained when small; otherwise (or when the client still waits for
        // 100 Continue and will not send it) the connection is closed after the answer.
        if (!req.complete && (expectContinue || !(left <= DRAIN_LIMIT) || error.code === "RequestTimeout" || error.code === "IncompleteBody")) res.setHeader("Connection", "close");
        if (error.code === "InvalidRange" && error.extra.ActualObjectSize) res.setHeader("Content-Range", `bytes */${error.extra.ActualObjectSize}`);
        res.writeHead(error.status, { "Content-Type": "application/xml", "Content-Length": data.length });
        res.end(data);
        if (ctx) ctx.bytesOut += data.length;
      }
    } finally {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      metrics.observe(op, res.statusCode, seconds, ctx?.bytesIn ?? 0, ctx?.bytesOut ?? 0, errorCode);
      metrics.inflight.dec();
      if (--inflight === 0) drained?.();
    }
  }

  const server = http.createServer({
    maxHeaderSize: config.s3.maxHeaderBytes,
    requestTimeout: 0, // big uploads take as long as they take; stalls are caught by s3.idleTimeout
    headersTimeout: 60_000,
    keepAliveTimeout: 5_000,
  }, (req, res) => { void handle(req, res); });
  server.on("checkContinue", (req: IncomingMessage, res: ServerResponse) => { void handle(req, res, true); });

  server.on("clientError", (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (err.code === "ECONNRESET" || !socket.writable) { socket.destroy(); return; }
    const tooLarge = err.code === "HPE_HEADER_OVERFLOW";
    const e = tooLarge ? s3err("RequestHeaderSectionTooLarge", undefined, { MaxSizeAllowed: String(config.s3.maxHeaderBytes) })
      : err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? s3err("RequestTimeout") : s3err("InvalidRequest", "The HTTP request could not be parsed.");
    const requestId = newRequestId();
    const data = Buffer.from(errorXml(e, "/", requestId));
    socket.end(`HTTP/1.1 ${e.status} ${http.STATUS_CODES[e.status] ?? "Error"}\r\nContent-Type: application/xml\r\nContent-Length: ${data.length}\r\n` +
      `x-amz-request-id: ${requestId}\r\nConnection: close\r\n\r\n${data.toString()}`);
    metrics.observe("Unknown", e.status, 0, 0, data.length, e.code);
  });

  return {
    listen(host: string, port: number): Promise<number> {
      return listen(server, host, port, "S3 API", "--s3-port");
    },
    async close(timeoutMs: number): Promise<void> {
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeIdleConnections();
      if (inflight > 0) {
        await Promise.race([new Promise<void>((r) => { drained = r; }), new Promise((r) => setTimeout(r, timeoutMs).unref())]);
      }
      server.closeAllConnections();
      await closed;
    },
  };
}
