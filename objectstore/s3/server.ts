/**
 * The S3 HTTP server: Node's HTTP server with S3's limits, each request run
 * through the pipeline (pipeline.ts) and answered with an S3 XML error when a
 * step throws (error-response.ts), malformed HTTP answered on the raw socket
 * (client-error.ts), metrics per request, and a close that waits for the
 * requests in flight. With `tls` it is an HTTPS server on the same port; a
 * plaintext request there is answered with an S3 error that says to use
 * https:// (plaintextOnTls), not a dropped connection.
 */
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import https from "node:https";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { listen } from "../../core/index.js";
import { ThocError } from "../../errors/index.js";
import { answerClientError } from "./client-error.js";
import { respondWithError } from "./error-response.js";
import { createS3Metrics } from "./metrics.js";
import { beginRequest, runPipeline, type PipelineDeps } from "./pipeline.js";
import { plaintextView } from "./sse.js";
import { SseContext, SseKeyRing } from "./sse-keys.js";
import { LocalKeyLocker } from "../blob/index.js";
import type { S3Server, S3ServerOptions } from "./types.js";

export function createS3Server(opts: S3ServerOptions): S3Server {
  const { config, log } = opts;
  const metrics = createS3Metrics(opts.metrics);
  const deps: PipelineDeps = {
    // Handlers see object metadata as clients do (plaintext ETags and checksums of encrypted objects: sse.ts).
    store: plaintextView(opts.store), credentials: opts.credentials, config, log,
    sse: new SseContext(new SseKeyRing(opts.sseKeys ?? config.cluster.keys)),
    writeLocks: opts.keyLocker ?? new LocalKeyLocker(),
    policy: { region: config.s3.region, maxClockSkewMs: config.s3.maxClockSkew, now: opts.now, sigV2: config.s3.sigV2 },
  };
  let inflight = 0;
  let drained: (() => void) | undefined;

  async function handle(req: IncomingMessage, res: ServerResponse, expectContinue = false): Promise<void> {
    const t0 = process.hrtime.bigint();
    const st = beginRequest(res, expectContinue);
    inflight++;
    metrics.inflight.inc();
    let errorCode: string | undefined;
    try {
      await runPipeline(deps, req, res, st);
    } catch (err) {
      errorCode = respondWithError(req, res, err, st, log);
    } finally {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      metrics.observe(st.op, res.statusCode, seconds, st.ctx?.bytesIn ?? 0, st.ctx?.bytesOut ?? 0, errorCode);
      metrics.inflight.dec();
      if (--inflight === 0) drained?.();
    }
  }

  const serverOpts: http.ServerOptions = {
    maxHeaderSize: config.s3.maxHeaderBytes,
    requestTimeout: 0, // big uploads take as long as they take; stalls are caught by s3.idleTimeout
    // An idle keep-alive connection is closed after 65 s, not Node's 5 s: a client that reuses a pooled
    // socket just as the server closes it gets ECONNRESET (seen in the 3-node S3 suite under load, where
    // a slow CompleteMultipartUpload left the SDK's second socket idle for ~5 s). S3 clients pool sockets
    // and reuse them within seconds; load balancers in front of S3-compatible stores idle out at 60 s.
    headersTimeout: 66_000,
    keepAliveTimeout: 65_000,
  };
  const onRequest = (req: IncomingMessage, res: ServerResponse) => { void handle(req, res); };
  const server = opts.tls
    // pauseOnConnect: the first byte is looked at before TLS takes the socket (plaintextOnTls).
    ? plaintextOnTls(https.createServer({ ...serverOpts, cert: opts.tls.cert, key: opts.tls.key, pauseOnConnect: true }, onRequest), (socket) => {
      answerClientError(Object.assign(new Error("plaintext HTTP on the HTTPS port"), { code: "THOC_PLAINTEXT_ON_TLS" }), socket, config.s3.maxHeaderBytes, metrics);
    })
    : http.createServer(serverOpts, onRequest);
  // Beyond this, Node closes a new connection on accept: a flood of idle or dripping clients cannot take every descriptor.
  server.maxConnections = config.s3.maxConnections;
  server.on("drop", () => metrics.connectionsRefused.inc());
  server.on("checkContinue", (req: IncomingMessage, res: ServerResponse) => { void handle(req, res, true); });
  server.on("clientError", (err: NodeJS.ErrnoException, socket: Duplex) => answerClientError(err, socket, config.s3.maxHeaderBytes, metrics));

  let closing: Promise<void> | undefined;
  /** Closes the listener and idle keep-alive connections (once); requests under way go on. */
  function stopAccepting(): Promise<void> {
    closing ??= new Promise<void>((r) => server.close(() => r()));
    server.closeIdleConnections();
    return closing;
  }

  return {
    listen(host: string, port: number): Promise<number> {
      return listen(server, host, port, "S3 API", "--s3-port");
    },
    stopAccepting,
    setTls(pair) {
      if (!(server instanceof https.Server)) throw new ThocError("failed_precondition", "the S3 port serves plaintext HTTP: set s3.tls.certFile and s3.tls.keyFile and restart to serve HTTPS");
      server.setSecureContext({ cert: pair.cert, key: pair.key });
    },
    async close(timeoutMs: number): Promise<void> {
      const closed = stopAccepting();
      if (inflight > 0) {
        await Promise.race([new Promise<void>((r) => { drained = r; }), new Promise((r) => setTimeout(r, timeoutMs).unref())]);
      }
      server.closeAllConnections();
      await closed;
    },
  };
}

/** A TLS record starts with a handshake (22) in a ClientHello; an HTTP request starts with a method's letter. */
const TLS_HANDSHAKE = 0x16;
/** As headersTimeout: a client gets as long to start as it gets to finish its headers. */
const FIRST_BYTE_TIMEOUT_MS = 66_000;

/**
 * Lets `server` (HTTPS, created with pauseOnConnect) answer a plaintext
 * request itself: without this, OpenSSL sees "PUT /..." as a bad handshake
 * and the client gets a reset connection it reports as a network error. The
 * first byte decides; a TLS connection goes on to the TLS layer untouched.
 */
function plaintextOnTls(server: https.Server, answer: (socket: Socket) => void): https.Server {
  const toTls = server.listeners("connection") as ((s: Socket) => void)[];
  server.removeAllListeners("connection");
  server.on("connection", (socket: Socket) => {
    socket.once("error", () => socket.destroy());
    // Nothing times out a connection that never sends its first byte: not the TLS handshake timer, not headersTimeout.
    const silent = setTimeout(() => socket.destroy(), FIRST_BYTE_TIMEOUT_MS).unref();
    socket.once("close", () => clearTimeout(silent));
    socket.once("readable", () => {
      clearTimeout(silent);
      const first = socket.read(1) as Buffer | null;
      if (!first) return void socket.destroy();
      socket.unshift(first);
      if (first[0] === TLS_HANDSHAKE) {
        for (const l of toTls) l.call(server, socket);
      } else {
        socket.resume();
        answer(socket);
      }
    });
  });
  return server;
}
