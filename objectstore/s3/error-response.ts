/**
 * The S3 XML error answer to a request that failed at any step of the
 * pipeline: what is logged, which headers stay, whether the connection can be
 * kept (an unread body is drained only when small), and the error document.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "../../core/index.js";
import { toS3Error, type S3Error } from "./errors.js";
import type { RequestState } from "./pipeline.js";
import { esc, XML_DECL } from "./xml.js";

/** Bodies left unread after an error are drained up to this size so the connection can be reused; beyond, it is closed. */
const DRAIN_LIMIT = 1 << 20;

/** The request id, and the CORS headers of a cross-origin request (ops-cors.ts): a browser script must be able to read the error. */
const KEEP_ON_ERROR = new Set(["x-amz-request-id", "x-amz-id-2", "server", "access-control-allow-origin", "access-control-allow-credentials",
  "access-control-allow-methods", "access-control-allow-headers", "access-control-expose-headers", "access-control-max-age", "vary"]);

export function errorXml(e: S3Error, resource: string, requestId: string): string {
  const extra = Object.entries(e.extra).map(([k, v]) => `<${k}>${esc(v)}</${k}>`).join("");
  return `${XML_DECL}<Error><Code>${esc(e.code)}</Code><Message>${esc(e.message)}</Message>${extra}<Resource>${esc(resource)}</Resource><RequestId>${requestId}</RequestId></Error>`;
}

/**
 * Answers err as S3 XML (or cuts the response when headers are already out)
 * and returns the error code metrics count: the S3 code, or ClientClosed
 * when the client went away.
 */
export function respondWithError(req: IncomingMessage, res: ServerResponse, err: unknown, st: RequestState, log: Logger): string {
  const { error, internal } = toS3Error(err);
  const clientGone = res.destroyed || req.destroyed || (err as { code?: string }).code === "ERR_STREAM_PREMATURE_CLOSE";
  if (!clientGone) {
    if (internal) log.error({ err, op: st.op, requestId: st.requestId }, "s3 request failed");
    else log.debug({ op: st.op, requestId: st.requestId, code: error.code, msg: error.message }, "s3 error");
  }
  if (res.headersSent) res.destroy();
  else writeError(req, res, error, st);
  return clientGone ? "ClientClosed" : error.code;
}

function writeError(req: IncomingMessage, res: ServerResponse, error: S3Error, st: RequestState): void {
  // Headers an operation set before failing (ETag, checksums...) do not belong on the error.
  for (const h of res.getHeaderNames()) if (!KEEP_ON_ERROR.has(h)) res.removeHeader(h);
  for (const [k, v] of Object.entries(error.headers ?? {})) res.setHeader(k, v);
  const data = req.method === "HEAD" || error.status === 304 ? Buffer.alloc(0) : Buffer.from(errorXml(error, st.resource, st.requestId));
  if (mustClose(req, error, st.expectContinue)) res.setHeader("Connection", "close");
  if (error.code === "InvalidRange" && error.extra.ActualObjectSize) res.setHeader("Content-Range", `bytes */${error.extra.ActualObjectSize}`);
  res.writeHead(error.status, { "Content-Type": "application/xml", "Content-Length": data.length });
  res.end(data);
  if (st.ctx) st.ctx.bytesOut += data.length;
}

/**
 * A body we will not read is drained when small; otherwise (or when the
 * client still waits for 100 Continue and will not send it, or the body
 * itself stalled or broke off) the connection is closed after the answer.
 */
function mustClose(req: IncomingMessage, error: S3Error, expectContinue: boolean): boolean {
  const left = Number(req.headers["content-length"] ?? NaN);
  return !req.complete && (expectContinue || !(left <= DRAIN_LIMIT) || error.code === "RequestTimeout" || error.code === "IncompleteBody");
}
