/**
 * The answer to HTTP Node could not parse (oversize headers, garbage, a
 * header timeout): such requests never reach the pipeline, so the S3 error
 * is written on the raw socket and the connection closed.
 */
import http from "node:http";
import type { Duplex } from "node:stream";
import { errorXml } from "./error-response.js";
import { s3err, type S3Error } from "./errors.js";
import type { S3Metrics } from "./metrics.js";
import { newRequestId } from "./request-id.js";

export function answerClientError(err: NodeJS.ErrnoException, socket: Duplex, maxHeaderBytes: number, metrics: S3Metrics): void {
  if (err.code === "ECONNRESET" || !socket.writable) {
    socket.destroy();
    return;
  }
  const e = clientErrorOf(err, maxHeaderBytes);
  const requestId = newRequestId();
  const data = Buffer.from(errorXml(e, "/", requestId));
  socket.end(`HTTP/1.1 ${e.status} ${http.STATUS_CODES[e.status] ?? "Error"}\r\nContent-Type: application/xml\r\nContent-Length: ${data.length}\r\n` +
    `x-amz-request-id: ${requestId}\r\nConnection: close\r\n\r\n${data.toString()}`);
  metrics.observe("Unknown", e.status, 0, 0, data.length, e.code);
}

function clientErrorOf(err: NodeJS.ErrnoException, maxHeaderBytes: number): S3Error {
  if (err.code === "HPE_HEADER_OVERFLOW") return s3err("RequestHeaderSectionTooLarge", undefined, { MaxSizeAllowed: String(maxHeaderBytes) });
  if (err.code === "ERR_HTTP_REQUEST_TIMEOUT") return s3err("RequestTimeout");
  if (err.code === "THOC_PLAINTEXT_ON_TLS") return s3err("InvalidRequest", "This S3 endpoint serves HTTPS only (s3.tls.certFile is set): use https:// in the endpoint URL.");
  return s3err("InvalidRequest", "The HTTP request could not be parsed.");
}
