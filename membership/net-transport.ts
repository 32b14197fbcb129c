/**
 * The real transport: UDP datagrams and one-shot TCP request/response
 * streams (4-byte length prefix each way) on the same gossip port. Bind
 * errors become a ThocError (failed_precondition: the agent exits 3 with one
 * line); send and socket errors are counted and logged, never thrown, so a
 * network hiccup cannot take the process down.
 *
 * An inbound stream is unauthenticated until its whole frame has arrived and
 * opened under the cluster key, so what a stranger can make it hold is
 * capped: a length prefix above maxFrameBytes is refused before any byte is
 * buffered, at most maxInbound streams are served at once (more are closed on
 * accept), and a frame must arrive whole within frameTimeoutMs, so a peer
 * dripping a byte now and then cannot keep its buffer.
 */
import dgram from "node:dgram";
import net from "node:net";
import { hostPort } from "../config/index.js";
import { listen } from "../core/index.js";
import { listenError } from "../errors/index.js";
import type { Transport } from "./types.js";

export interface NetTransportOptions {
  bind: string;
  port: number;
  /** host others reach us on (defaults to bind). */
  advertise?: string;
  onError?: (where: string, err: Error) => void;
  /** Largest frame accepted either way (gossip.maxStreamBytes); default 1 MiB. */
  maxFrameBytes?: number;
  /** Inbound streams served at once (gossip.maxInboundStreams); default 32. */
  maxInbound?: number;
  /** An inbound frame must be complete this long after the connection opened (gossip.streamTimeout); default 5 s. */
  frameTimeoutMs?: number;
}

/** Inbound streams cut short, by reason (a peer of this cluster never causes any). */
export interface RefusedStreams { oversize: number; overLimit: number; timeout: number }

function splitHostPort(a: string): [string, number] {
  const i = a.lastIndexOf(":");
  return [a.slice(0, i).replace(/^\[|\]$/g, ""), Number(a.slice(i + 1))];
}

export class NetTransport implements Transport {
  address = "";
  sendErrors = 0;
  readonly refused: RefusedStreams = { oversize: 0, overLimit: 0, timeout: 0 };
  private udp?: dgram.Socket;
  private tcp?: net.Server;
  private handlers?: Parameters<Transport["listen"]>[0];
  private readonly conns = new Set<net.Socket>();

  private readonly maxFrame: number;

  private constructor(private readonly o: NetTransportOptions) {
    this.maxFrame = o.maxFrameBytes ?? 1 << 20;
  }

  /** Binds UDP and TCP on the same port (TCP first when port is 0, so UDP takes the port TCP got). */
  static async open(o: NetTransportOptions): Promise<NetTransport> {
    const t = new NetTransport(o);
    const family = net.isIPv6(o.bind) ? "udp6" : "udp4";
    t.tcp = net.createServer((s) => t.serve(s));
    // Node closes connections beyond this on accept, before reading a byte.
    t.tcp.maxConnections = o.maxInbound ?? 32;
    t.tcp.on("drop", () => { t.refused.overLimit++; });
    const port = await listen(t.tcp, o.bind, o.port, "gossip (TCP)", "--gossip-port");
    t.tcp.on("error", (e) => o.onError?.("tcp server", e));
    t.udp = dgram.createSocket({ type: family, reuseAddr: false });
    await new Promise<void>((resolve, reject) => {
      t.udp!.once("error", reject);
      t.udp!.bind(port, o.bind, () => { t.udp!.off("error", reject); resolve(); });
    }).catch(async (err: NodeJS.ErrnoException) => {
      await new Promise((r) => t.tcp!.close(r));
      throw listenError(err, "gossip (UDP)", hostPort(o.bind, port), "--gossip-port");
    });
    t.udp.on("error", (e) => o.onError?.("udp socket", e));
    t.udp.on("message", (msg, rinfo) => t.handlers?.packet(msg, hostPort(rinfo.address, rinfo.port)));
    t.address = hostPort(o.advertise || o.bind, port);
    return t;
  }

  listen(h: Parameters<Transport["listen"]>[0]): void { this.handlers = h; }

  sendPacket(to: string, data: Uint8Array): void {
    const [host, port] = splitHostPort(to);
    try {
      this.udp?.send(data, port, host, (err) => {
        if (err) { this.sendErrors++; this.o.onError?.(`send to ${to}`, err); }
      });
    } catch (err) {
      this.sendErrors++;
      this.o.onError?.(`send to ${to}`, err as Error);
    }
  }

  request(to: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    const [host, port] = splitHostPort(to);
    return new Promise((resolve, reject) => {
      const s = net.connect({ host, port, localAddress: this.o.bind === "0.0.0.0" || this.o.bind === "::" ? undefined : this.o.bind });
      s.setTimeout(timeoutMs, () => s.destroy(new Error(`timeout after ${timeoutMs} ms`)));
      readFrame(s, this.maxFrame, (err, buf) => { s.destroy(); if (err) reject(err); else resolve(buf!); });
      s.on("connect", () => s.write(frame(data)));
    });
  }

  private serve(s: net.Socket): void {
    this.conns.add(s);
    s.on("close", () => this.conns.delete(s));
    s.setTimeout(10_000, () => s.destroy());
    const deadline = setTimeout(() => { this.refused.timeout++; s.destroy(); }, this.o.frameTimeoutMs ?? 5000);
    s.on("close", () => clearTimeout(deadline));
    readFrame(s, this.maxFrame, (err, buf) => {
      clearTimeout(deadline);
      if (err instanceof FrameTooLarge) this.refused.oversize++;
      if (err || !this.handlers) { s.destroy(); return; }
      const [host, port] = [s.remoteAddress ?? "", s.remotePort ?? 0];
      this.handlers.request(buf!, hostPort(host, port)).then((resp) => s.end(frame(resp)), () => s.destroy());
    });
  }

  async close(): Promise<void> {
    for (const c of this.conns) c.destroy();
    await Promise.all([
      new Promise<void>((r) => (this.tcp ? this.tcp.close(() => r()) : r())),
      new Promise<void>((r) => { try { this.udp ? this.udp.close(() => r()) : r(); } catch { r(); } }),
    ]);
  }
}

function frame(data: Uint8Array): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(data.length);
  return Buffer.concat([h, data]);
}

class FrameTooLarge extends Error {}

/**
 * Reads one length-prefixed frame, then calls done exactly once. An
 * oversized prefix fails at once; once done, nothing more is read or kept.
 */
function readFrame(s: net.Socket, max: number, done: (err: Error | undefined, buf?: Buffer) => void): void {
  let chunks: Buffer[] = [];
  let have = 0;
  let need = -1;
  let finished = false;
  const finish = (err?: Error, buf?: Buffer) => {
    if (finished) return;
    finished = true;
    s.off("data", onData);
    chunks = [];
    done(err, buf);
  };
  const onData = (c: Buffer) => {
    chunks.push(c);
    have += c.length;
    if (need < 0 && have >= 4) {
      const all = Buffer.concat(chunks);
      need = all.readUInt32BE(0);
      if (need > max) return finish(new FrameTooLarge(`frame of ${need} bytes exceeds ${max}`));
      chunks = [all];
    }
    if (need >= 0 && have >= 4 + need) finish(undefined, Buffer.concat(chunks).subarray(4, 4 + need));
  };
  s.on("data", onData);
  s.on("error", (e) => finish(e));
  s.on("close", () => finish(new Error("connection closed before a full frame")));
}
