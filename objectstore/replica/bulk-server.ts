/**
 * The receiving side of the bulk data path (bulk-wire.ts): replica bodies in
 * and out of this node's replica store (and its hints for other nodes) as raw
 * HTTP/1.1 bodies, piped between the socket and the store's file writer
 * without a per-message decode or copy. Connections arrive from the gRPC
 * port's listener (RpcServer.addPreface) with the preface consumed; they are
 * secured here as the gRPC port is (TLS under the same material, peers asked
 * for their node certificate) and every request is authenticated with the
 * replica protocol's MAC and the transport identity check.
 */
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import https from "node:https";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { ThocError } from "../../errors/index.js";
import { callerFromCertificate, type Caller } from "../../rpc/index.js";
import { PEER_AUTH_HEADER, type HlcClock, type PeerAuth } from "../../cluster/index.js";
import type { TlsMaterial } from "../../core/index.js";
import type { HintStore } from "./hints.js";
import { validateHeader, type ReplicaStore, type ReplicaWrite } from "./replica-store.js";
import {
  GET_METHOD, H_GET, H_IDLE, H_INLINE, H_RECORD, MAX_HEADER_BYTES, MAX_IDLE_MS, PUT_METHOD, T_STATUS, T_TRAILER,
  decodeHeader, encodeHeader, errorBody, type GetHeader, type PutHeader, type Trailer,
} from "./bulk-wire.js";

export interface BulkServerDeps {
  store: ReplicaStore;
  hints: HintStore;
  hlc: HlcClock;
  auth: PeerAuth;
  /** The gRPC port's TLS material; undefined: plaintext (--dev, loopback). */
  tls: () => TlsMaterial | undefined;
  /** objectstore.peerTimeout: a request whose peer is silent this long is dropped (the sender may ask for longer while its own source is slow). */
  idleTimeoutMs: number;
  log?: { warn(o: object, m: string): void };
}

/** Keep-alive of idle connections: longer than the clients' pool keeps them (bulk-client.ts). */
const KEEP_ALIVE_MS = 65_000;

type OpStats = { ok: number; refused: number; failed: number; bytes: number };

export class BulkServer {
  /** Requests by outcome and body bytes moved (put: received and stored; get: sent), for metrics. */
  readonly stats: { put: OpStats; get: OpStats } = { put: { ok: 0, refused: 0, failed: 0, bytes: 0 }, get: { ok: 0, refused: 0, failed: 0, bytes: 0 } };
  private readonly plain: http.Server;
  private secure?: { server: https.Server; material: TlsMaterial };

  constructor(private readonly d: BulkServerDeps) {
    this.plain = this.configure(http.createServer({ maxHeaderSize: MAX_HEADER_BYTES }, (req, res) => this.serve(req, res)));
  }

  private configure<T extends http.Server>(s: T): T {
    s.keepAliveTimeout = KEEP_ALIVE_MS;
    // No fixed deadline for a request: a many-GB body takes as long as it takes; silence is what is limited (idle below).
    s.requestTimeout = 0;
    s.headersTimeout = 20_000;
    s.timeout = 0;
    return s;
  }

  /** A connection from the shared port, preface consumed. */
  handle(sock: Socket): void {
    sock.setNoDelay(true);
    const m = this.d.tls();
    if (!m) {
      this.plain.emit("connection", sock);
      // The port's listener paused it to read the preface; HTTP's parser only adds listeners.
      sock.resume();
      return;
    }
    if (this.secure?.material !== m) {
      // Peers must present a certificate of the cluster CA (the MAC's node id is checked against it per request).
      const opts = { cert: m.cert, key: m.key, maxHeaderSize: MAX_HEADER_BYTES, ...(m.ca ? { ca: m.ca, requestCert: true, rejectUnauthorized: true } : {}) };
      if (this.secure) this.secure.server.setSecureContext(opts);
      else this.secure = { server: this.configure(https.createServer(opts, (req, res) => this.serve(req, res))), material: m };
      this.secure.material = m;
    }
    this.secure.server.emit("connection", sock);
  }

  private caller(req: IncomingMessage): Caller {
    const s = req.socket as TLSSocket;
    if (typeof s.getPeerCertificate !== "function") return { kind: "anonymous", transport: "insecure" };
    if (!s.authorized) return { kind: "anonymous", transport: "tls" };
    return callerFromCertificate(s.getPeerCertificate());
  }

  private authenticate(req: IncomingMessage, method: string, signed: string): string {
    const v = req.headers[PEER_AUTH_HEADER];
    const node = this.d.auth.verify(method, typeof v === "string" ? v : undefined, Buffer.from(signed));
    this.d.auth.checkCaller(this.caller(req), node, method);
    return node;
  }

  private serve(req: IncomingMessage, res: ServerResponse): void {
    const run = req.method === "PUT" && req.url === "/replica" ? this.put(req, res)
      : req.method === "GET" && req.url === "/replica" ? this.get(req, res)
      : Promise.reject(new ThocError("not_found", `bulk data path: no ${req.method} ${req.url?.slice(0, 64)}`));
    const st = req.method === "PUT" ? this.stats.put : this.stats.get;
    run.then(() => { st.ok++; }, (err: unknown) => {
      const code = ThocError.from(err).code;
      if (code === "unauthenticated" || code === "permission_denied") st.refused++;
      else st.failed++;
      this.fail(req, res, err);
    });
  }

  private fail(req: IncomingMessage, res: ServerResponse, err: unknown): void {
    const e = ThocError.from(err);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (e.code !== "unauthenticated" && e.code !== "permission_denied") {
      this.d.log?.warn({ code: e.code, err: e.message }, "object store: bulk request failed");
    }
    const body = errorBody(e);
    // A body we did not read to its end: the connection cannot carry another request.
    const close = !req.complete;
    res.writeHead(e.code === "not_found" ? 404 : 500, { "content-type": "application/json", "content-length": Buffer.byteLength(body), ...(close ? { connection: "close" } : {}) });
    res.end(body);
    if (close) res.once("finish", () => req.socket.destroySoon());
  }

  private idle(req: IncomingMessage): number {
    const asked = Number(req.headers[H_IDLE]);
    return Number.isFinite(asked) && asked > 0 ? Math.min(Math.max(asked, this.d.idleTimeoutMs), MAX_IDLE_MS) : this.d.idleTimeoutMs;
  }

  private async put(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = req.headers[H_RECORD];
    const idleHdr = req.headers[H_IDLE];
    this.authenticate(req, PUT_METHOD, `${typeof raw === "string" ? raw : ""}\n${typeof idleHdr === "string" ? idleHdr : ""}`);
    const h = decodeHeader<PutHeader>(raw, H_RECORD);
    if (h.clock) this.d.hlc.update(h.clock);
    const r = h.record ?? {};
    const header: ReplicaWrite["header"] = { bucket: r.bucket, key: r.key, version: r.version, tombstone: !!r.tombstone, meta: r.meta ?? "" };
    const known = r.size !== undefined && r.sha256 !== undefined;
    if (known) Object.assign(header, { size: r.size, sha256: r.sha256 });
    validateHeader(header);
    const idleMs = this.idle(req);
    // One listener per request, removed after it: a keep-alive socket carries many requests.
    const silent = () => req.destroy(new ThocError("deadline_exceeded", `bulk PUT ${header.bucket}/${header.key}: the sender went silent for ${idleMs} ms; nothing stored`));
    req.socket.setTimeout(idleMs);
    req.socket.on("timeout", silent);
    try {
      const target = h.hintFor ? this.d.hints.for(h.hintFor) : this.d.store;
      const out = await target.put({
        header,
        body: req,
        expected: () => {
          if (known) return { size: r.size!, sha256: r.sha256!, meta: header.meta };
          const t = req.trailers[T_TRAILER];
          if (!t) throw new ThocError("data_loss", `bulk PUT ${header.bucket}/${header.key}: the body ended without its trailer (sender cancelled or died); nothing stored`);
          return decodeHeader<Trailer>(t, T_TRAILER);
        },
      });
      if (out.applied) this.stats.put.bytes += Number(req.headers["content-length"] ?? 0) || (req.trailers[T_TRAILER] ? decodeHeader<Trailer>(req.trailers[T_TRAILER], T_TRAILER).size : 0);
      const body = JSON.stringify(out);
      const close = !req.complete;
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body), ...(close ? { connection: "close" } : {}) });
      res.end(body);
      if (close) res.once("finish", () => req.socket.destroySoon());
    } finally {
      req.socket.setTimeout(0);
      req.socket.off("timeout", silent);
    }
  }

  private async get(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = req.headers[H_GET];
    this.authenticate(req, GET_METHOD, typeof raw === "string" ? raw : "");
    const g = decodeHeader<GetHeader>(raw, H_GET);
    if (g.range && !(Number.isSafeInteger(g.range.start) && Number.isSafeInteger(g.range.end) && g.range.start >= 0 && g.range.end >= g.range.start)) {
      throw new ThocError("invalid_argument", `bulk GET: bad range ${JSON.stringify(g.range)}`);
    }
    if (g.head) return this.head(g, res);
    const got = await this.d.store.get(g.bucket, g.key, g.range ? { range: g.range } : {});
    if (!got) throw new ThocError("not_found", `no replica of ${g.bucket}/${g.key} on this node`, { bucket: g.bucket, key: g.key });
    const stalled = () => res.destroy();
    req.socket.setTimeout(this.d.idleTimeoutMs);
    req.socket.on("timeout", stalled);
    res.writeHead(200, { [H_RECORD]: encodeHeader(got.record), trailer: T_STATUS });
    let status = "ok";
    try {
      for await (const c of got.body) {
        if (res.destroyed) return;
        this.stats.get.bytes += c.byteLength;
        if (!res.write(c)) await drained(res);
      }
    } catch (err) {
      // Cut short by the store (a damaged body): the receiver learns why from the trailer, code and all.
      status = encodeHeader(JSON.parse(errorBody(err)));
    } finally {
      req.socket.setTimeout(0);
      req.socket.off("timeout", stalled);
    }
    res.addTrailers({ [T_STATUS]: status });
    res.end();
  }

  private async head(g: GetHeader, res: ServerResponse): Promise<void> {
    const rec = await this.d.store.head(g.bucket, g.key);
    let body: Buffer | undefined;
    if (rec && !rec.tombstone && rec.size > 0 && rec.size <= (g.head?.inlineMax ?? 0)) {
      const got = await this.d.store.get(g.bucket, g.key).catch(() => undefined);
      if (got?.record.version === rec.version) {
        const parts: Buffer[] = [];
        try {
          for await (const c of got.body) parts.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength));
          body = Buffer.concat(parts);
        } catch {
          body = undefined; // damaged: the record alone; the reader asks another holder for the body
        }
      }
    }
    res.writeHead(200, { ...(rec ? { [H_RECORD]: encodeHeader(rec) } : {}), ...(body ? { [H_INLINE]: "1" } : {}), "content-length": body?.length ?? 0 });
    res.end(body);
  }
}

function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => { res.off("drain", done); res.off("close", done); resolve(); };
    res.on("drain", done);
    res.on("close", done);
  });
}
