/**
 * The VNC WebSocket: a noVNC client connects to wss://agent:vm.vncPort/vnc/<vm>?token=T
 * (ws:// when the agent has no TLS) with a token from VmService.GetVncToken
 * (single use, bound to the VM, 60 s); the proxy relays binary WebSocket
 * frames to the VM's VNC server, which listens on 127.0.0.1 only. RFC 6455
 * framing is small enough to do here, without a package.
 */
import { createHash } from "node:crypto";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import type { Duplex } from "node:stream";
import type { VmManager } from "./manager.js";
import type { VncTokens } from "./vnc.js";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** The VNC port libvirt gave the running domain (autoport), from its live XML. */
export async function vncPort(m: VmManager, vm: string): Promise<number | undefined> {
  const r = await m.get(vm);
  const xml = await m.o.hv.xml(r.domain);
  const p = Number(/<graphics type=['"]vnc['"][^>]*\bport=['"](\d+)['"]/.exec(xml)?.[1]);
  return Number.isInteger(p) && p > 0 ? p : undefined;
}

export function encodeFrame(payload: Buffer, opcode = 2): Buffer {
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x80 | opcode, n]) : n < 65536 ? Buffer.from([0x80 | opcode, 126, n >> 8, n & 255]) : (() => {
    const h = Buffer.alloc(10); h[0] = 0x80 | opcode; h[1] = 127; h.writeBigUInt64BE(BigInt(n), 2); return h;
  })();
  return Buffer.concat([head, payload]);
}

/** Parses as many complete frames as buf holds; returns them and the unconsumed rest. */
export function decodeFrames(buf: Buffer): { frames: { opcode: number; fin: boolean; payload: Buffer }[]; rest: Buffer } {
  const frames: { opcode: number; fin: boolean; payload: Buffer }[] = [];
  let off = 0;
  while (buf.length - off >= 2) {
    const b0 = buf[off]!, b1 = buf[off + 1]!;
    let len = b1 & 127, p = off + 2;
    if (len === 126) { if (buf.length - p < 2) break; len = buf.readUInt16BE(p); p += 2; }
    else if (len === 127) { if (buf.length - p < 8) break; len = Number(buf.readBigUInt64BE(p)); p += 8; }
    const masked = (b1 & 128) !== 0;
    const mask = masked ? buf.subarray(p, p + 4) : undefined;
    if (masked) p += 4;
    if (buf.length - p < len) break;
    const payload = Buffer.from(buf.subarray(p, p + len));
    if (mask) for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i & 3]!;
    frames.push({ opcode: b0 & 15, fin: (b0 & 128) !== 0, payload });
    off = p + len;
  }
  return { frames, rest: buf.subarray(off) };
}

function refuse(socket: Duplex, status: number, msg: string): void {
  socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(msg)}\r\nConnection: close\r\n\r\n${msg}`);
}

/** With `tls` (the agent's own certificate) the WebSocket is wss:// only: the token and the screen never cross the network in clear. */
export function createVncProxy(m: VmManager, tokens: VncTokens, tls?: { cert: Buffer; key: Buffer }): http.Server {
  const scheme = tls ? "wss" : "ws";
  const onRequest = (_req: http.IncomingMessage, res: http.ServerResponse) => {
    res.writeHead(426, { "Content-Type": "text/plain" }).end(`WebSocket only: ${scheme}://HOST:PORT/vnc/<vm>?token=T (thoc-node vm vnc NAME)\n`);
  };
  const server: http.Server = tls ? https.createServer({ cert: tls.cert, key: tls.key }, onRequest) : http.createServer(onRequest);
  server.on("upgrade", (req, socket) => {
    void (async () => {
      const url = new URL(req.url ?? "/", "http://x");
      const match = /^\/vnc\/([a-z0-9-]+)$/.exec(url.pathname);
      const key = req.headers["sec-websocket-key"];
      if (!match || typeof key !== "string") return refuse(socket, 400, "expected a WebSocket upgrade to /vnc/<vm>?token=T\n");
      const vm = match[1]!;
      if (!tokens.redeem(vm, url.searchParams.get("token") ?? "")) return refuse(socket, 401, "invalid or expired token: get a new one with thoc-node vm vnc NAME\n");
      const port = await vncPort(m, vm).catch(() => undefined);
      if (!port) return refuse(socket, 409, `VM ${vm} has no VNC server (is it running?)\n`);
      const vnc = net.connect(port, "127.0.0.1");
      vnc.once("error", () => socket.destroy());
      vnc.once("connect", () => {
        const protos = String(req.headers["sec-websocket-protocol"] ?? "").split(",").map((s) => s.trim());
        socket.write([
          "HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
          `Sec-WebSocket-Accept: ${createHash("sha1").update(key + GUID).digest("base64")}`,
          ...(protos.includes("binary") ? ["Sec-WebSocket-Protocol: binary"] : []), "", "",
        ].join("\r\n"));
        vnc.on("data", (d: Buffer) => socket.write(encodeFrame(d)));
        let pending: Buffer = Buffer.alloc(0);
        socket.on("data", (d: Buffer) => {
          const { frames, rest } = decodeFrames(Buffer.concat([pending, d]));
          pending = rest;
          for (const f of frames) {
            if (f.opcode === 8) { socket.end(encodeFrame(Buffer.alloc(0), 8)); vnc.end(); return; }
            if (f.opcode === 9) socket.write(encodeFrame(f.payload, 10));
            else if (f.opcode <= 2) vnc.write(f.payload);
          }
        });
        const close = () => { vnc.destroy(); socket.destroy(); };
        socket.on("close", close); socket.on("error", close);
        vnc.on("close", close);
      });
    })().catch(() => socket.destroy());
  });
  return server;
}
