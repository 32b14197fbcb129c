/**
 * The sending side of the bulk data path (bulk-wire.ts) to one peer node:
 * a pool of warm keep-alive connections on the peer's gRPC port (preface,
 * then TLS as the gRPC port speaks it, then HTTP/1.1). A chunk handed to put()
 * is written to the socket as it is (the coordinator's tee hands the same
 * buffer to every replica), with the socket's backpressure pacing the source.
 *
 * Deadlines are idle deadlines: a call fails when the peer neither takes nor
 * sends anything for objectstore.peerTimeout while we wait on it. Time spent
 * waiting on our own source (a slow S3 client) does not count, and the
 * receiver is told how long such a pause may last (x-thoc-idle-ms).
 */
import { createHash } from "node:crypto";
import http, { type ClientRequest, type IncomingMessage } from "node:http";
import net from "node:net";
import tls from "node:tls";
import { ThocError } from "../../errors/index.js";
import { PEER_AUTH_HEADER, type HlcClock, type PeerAuth } from "../../cluster/index.js";
import type { TlsMaterial } from "../../core/index.js";
import type { BodyRange, PutOutcome, ReplicaRecord, ReplicaWrite } from "./replica-store.js";
import {
  BULK_PREFACE, GET_METHOD, H_GET, H_IDLE, H_INLINE, H_RECORD, MAX_HEADER_BYTES, PUT_METHOD, T_STATUS, T_TRAILER,
  decodeHeader, encodeHeader, errorFrom, type GetHeader, type PutHeader,
} from "./bulk-wire.js";

export interface BulkClientOptions {
  nodeId: string;
  /** host:port of the peer's gRPC port. */
  address: string;
  auth: PeerAuth;
  hlc: HlcClock;
  tls: () => TlsMaterial | undefined;
  /** objectstore.peerTimeout */
  timeoutMs: number;
  /** How long the receiver should wait through a pause of our own source (default 60 s). */
  sourceIdleMs?: number;
}

const ANSWERED: unique symbol = Symbol("answered");

/** Sockets kept per peer: enough for the coordinator's concurrent writes plus repair. */
const MAX_SOCKETS = 64;

class BulkAgent extends http.Agent {
  constructor(private readonly dial: () => net.Socket) {
    super({ keepAlive: true, keepAliveMsecs: 10_000, maxSockets: MAX_SOCKETS, maxFreeSockets: 16, timeout: 60_000, scheduling: "lifo" });
  }

  override createConnection(): net.Socket {
    return this.dial();
  }
}

export class BulkClient {
  private readonly agent: BulkAgent;
  private readonly host: string;
  private readonly port: number;

  constructor(private readonly o: BulkClientOptions) {
    const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(o.address);
    if (!m) throw new ThocError("invalid_argument", `bulk data path: bad peer address ${o.address}`);
    this.host = m[1]!;
    this.port = Number(m[2]);
    this.agent = new BulkAgent(() => this.dial());
  }

  private dial(): net.Socket {
    const raw = net.connect({ host: this.host, port: this.port, noDelay: true });
    raw.write(BULK_PREFACE);
    const m = this.o.tls();
    if (!m) return raw;
    // The peer is verified as gRPC verifies it: its certificate chains to the cluster CA and names the address dialled.
    return tls.connect({ socket: raw, host: this.host, ...(net.isIP(this.host) ? {} : { servername: this.host }), cert: m.cert, key: m.key, ...(m.ca ? { ca: m.ca } : {}) });
  }

  close(): void {
    this.agent.destroy();
  }

  private request(method: "PUT" | "GET", headers: Record<string, string | number>): { req: ClientRequest; response: Promise<IncomingMessage> } {
    const req = http.request({ agent: this.agent, host: this.host, port: this.port, method, path: "/replica", headers, maxHeaderSize: MAX_HEADER_BYTES });
    const response = new Promise<IncomingMessage>((resolve, reject) => {
      req.once("response", resolve);
      req.once("error", reject);
    });
    response.catch(() => {});
    return { req, response };
  }

  /** Streams one replica; resolves once the peer stored it durably (or kept a newer version). */
  async put(w: ReplicaWrite, opts: { hintFor?: string; signal?: AbortSignal } = {}): Promise<PutOutcome> {
    const hd = w.header;
    const known = hd.size !== undefined && hd.sha256 !== undefined;
    const h: PutHeader = {
      record: { bucket: hd.bucket, key: hd.key, version: hd.version, tombstone: hd.tombstone, meta: hd.meta, ...(known ? { size: hd.size, sha256: hd.sha256 } : {}) },
      ...(opts.hintFor ? { hintFor: opts.hintFor } : {}),
      clock: this.o.hlc.now(),
    };
    const rec = encodeHeader(h);
    const idle = String(this.o.sourceIdleMs ?? 60_000);
    const { req, response } = this.request("PUT", {
      [H_RECORD]: rec, [H_IDLE]: idle,
      [PEER_AUTH_HEADER]: this.o.auth.sign(PUT_METHOD, this.o.nodeId, Buffer.from(`${rec}\n${idle}`)),
      ...(known ? { "content-length": hd.size! } : { "transfer-encoding": "chunked", trailer: T_TRAILER }),
    });
    const watch = new Watchdog(`bulk PUT ${hd.bucket}/${hd.key}`, this.o.nodeId, this.o.timeoutMs, (e) => req.destroy(e));
    const onAbort = () => req.destroy(ThocError.from(opts.signal?.reason ?? new ThocError("cancelled", "write abandoned"), "cancelled"));
    if (opts.signal?.aborted) onAbort();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    let answered = false;
    // Settles when the peer answers or the connection fails: a write must not wait for our (slow) source to learn that.
    const settled = response.then(() => { answered = true; return ANSWERED; }, () => { answered = true; return ANSWERED; });
    try {
      const it = w.body[Symbol.asyncIterator]();
      try {
        for (;;) {
          const r = await Promise.race([it.next(), settled]);
          if (typeof r === "symbol" || r.done || answered) break;
          if (!req.write(r.value)) {
            watch.arm();
            await Promise.race([onceDrained(req), settled]);
            watch.disarm();
          }
        }
      } finally {
        // The replica answered before taking the whole body (a newer version there): stop reading our side of the tee.
        // Not awaited: an async generator's return() waits for its pending next(), i.e. for our slow source.
        if (answered) it.return?.()?.catch(() => {});
      }
      if (!answered) {
        if (!known) req.addTrailers({ [T_TRAILER]: encodeHeader(w.expected()) });
        req.end();
      }
      watch.arm(); // from here on the replica owes us its commit and answer
      const res = await response;
      const text = await readText(res);
      if (res.statusCode !== 200) throw errorFrom(text, res.statusCode ?? 0, this.o.nodeId);
      const out = JSON.parse(text) as PutOutcome;
      return { applied: out.applied, current: out.current };
    } catch (err) {
      req.destroy();
      throw watch.error(err, this.o.nodeId);
    } finally {
      watch.disarm();
      opts.signal?.removeEventListener("abort", onAbort);
    }
  }

  /** The record (undefined: none here) and, when it is live and at most inlineMax bytes, its body, verified. */
  async head(bucket: string, key: string, inlineMax = 0): Promise<{ record?: ReplicaRecord; body?: Buffer }> {
    const raw = encodeHeader({ bucket, key, head: { inlineMax } } satisfies GetHeader);
    const { req, response } = this.request("GET", { [H_GET]: raw, [PEER_AUTH_HEADER]: this.o.auth.sign(GET_METHOD, this.o.nodeId, Buffer.from(raw)) });
    req.end();
    const watch = new Watchdog(`bulk HEAD ${bucket}/${key}`, this.o.nodeId, this.o.timeoutMs, (e) => req.destroy(e));
    watch.arm();
    try {
      const res = await response;
      const parts: Buffer[] = [];
      for await (const c of res as AsyncIterable<Buffer>) parts.push(c);
      const text = Buffer.concat(parts);
      if (res.statusCode !== 200) throw errorFrom(text.toString(), res.statusCode ?? 0, this.o.nodeId);
      if (res.headers[H_RECORD] === undefined) return {};
      const record = decodeHeader<ReplicaRecord>(res.headers[H_RECORD], H_RECORD);
      if (res.headers[H_INLINE] !== "1") return { record };
      if (text.length !== record.size || createHash("sha256").update(text).digest("hex") !== record.sha256) {
        throw new ThocError("data_loss", `replica of ${bucket}/${key} from ${this.o.nodeId} is corrupt (size or sha256 mismatch)`, { node: this.o.nodeId });
      }
      return { record, body: text };
    } catch (err) {
      throw watch.error(err, this.o.nodeId);
    } finally {
      watch.disarm();
    }
  }

  /** The record and a body verified against its size and sha256 (whole reads) as it is read. */
  async get(bucket: string, key: string, opts: { range?: BodyRange } = {}): Promise<{ record: ReplicaRecord; body: AsyncIterable<Uint8Array> }> {
    const g: GetHeader = { bucket, key, ...(opts.range ? { range: { start: opts.range.start, end: opts.range.end } } : {}) };
    const raw = encodeHeader(g);
    const { req, response } = this.request("GET", { [H_GET]: raw, [PEER_AUTH_HEADER]: this.o.auth.sign(GET_METHOD, this.o.nodeId, Buffer.from(raw)) });
    req.end();
    const watch = new Watchdog(`bulk GET ${bucket}/${key}`, this.o.nodeId, this.o.timeoutMs, (e) => req.destroy(e));
    watch.arm();
    let res: IncomingMessage;
    try {
      res = await response;
    } catch (err) {
      watch.disarm();
      throw watch.error(err, this.o.nodeId);
    }
    if (res.statusCode !== 200) {
      const text = await readText(res).finally(() => watch.disarm());
      throw errorFrom(text, res.statusCode ?? 0, this.o.nodeId);
    }
    let record: ReplicaRecord;
    try {
      record = decodeHeader<ReplicaRecord>(res.headers[H_RECORD], H_RECORD);
    } catch (err) {
      watch.disarm();
      res.destroy();
      throw new ThocError("data_loss", `bulk GET ${bucket}/${key} from ${this.o.nodeId}: ${ThocError.from(err).message}`);
    }
    const range = opts.range;
    const expectSize = range ? Math.max(0, Math.min(record.size - 1, range.end) - range.start + 1) : record.size;
    const nodeId = this.o.nodeId;
    async function* body(): AsyncIterable<Uint8Array> {
      const h = range ? undefined : createHash("sha256");
      let n = 0;
      let finished = false;
      try {
        for await (const c of res as AsyncIterable<Buffer>) {
          watch.arm();
          n += c.byteLength;
          if (n > expectSize) break;
          h?.update(c);
          yield c;
        }
        finished = true;
      } catch (err) {
        throw watch.error(err, nodeId);
      } finally {
        watch.disarm();
        if (!finished) res.destroy();
      }
      const st = res.trailers[T_STATUS];
      if (st !== "ok") {
        if (st) throw errorFrom(JSON.stringify(decodeHeader<object>(st, T_STATUS)), 500, nodeId);
        throw new ThocError("unavailable", `bulk GET ${bucket}/${key} from ${nodeId}: the body ended without its status (peer stopped)`, { node: nodeId });
      }
      if (n !== expectSize || (h && h.digest("hex") !== record.sha256)) {
        throw new ThocError("data_loss", `replica of ${bucket}/${key} from ${nodeId} is corrupt (size or sha256 mismatch)`, { node: nodeId });
      }
    }
    return { record, body: body() };
  }
}

/**
 * One reusable timer per call, armed only while we wait on the peer: a body
 * of thousands of chunks must not allocate a timer per chunk.
 */
class Watchdog {
  private timer?: NodeJS.Timeout;
  private fired = false;

  constructor(private readonly what: string, private readonly nodeId: string, private readonly ms: number, private readonly onFire: (e: ThocError) => void) {}

  private stalled(): ThocError {
    return new ThocError("deadline_exceeded", `${this.what} on ${this.nodeId}: no progress for ${this.ms} ms`, { node: this.nodeId });
  }

  arm(): void {
    if (this.timer) {
      this.timer.refresh();
      return;
    }
    this.timer = setTimeout(() => { this.fired = true; this.onFire(this.stalled()); }, this.ms);
    this.timer.unref();
  }

  disarm(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  error(err: unknown, nodeId: string): ThocError {
    if (this.fired) return this.stalled();
    if (err instanceof ThocError) return err;
    const e = ThocError.from(err, "unavailable");
    // A connection that died mid-call (peer killed, reset) is "cannot reach it", which the coordinator counts as down.
    return e.code === "internal" ? new ThocError("unavailable", `${this.what} on ${nodeId}: ${e.message}`, { node: nodeId }) : e;
  }
}

function onceDrained(req: ClientRequest): Promise<void> {
  return new Promise((resolve) => {
    const done = () => { req.off("drain", done); req.off("close", done); resolve(); };
    req.on("drain", done);
    req.on("close", done);
  });
}

async function readText(res: IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of res as AsyncIterable<Buffer>) parts.push(c);
  return Buffer.concat(parts).toString();
}
