/**
 * Worker thread of hash-pool.ts: MD5 and/or requested checksums for many
 * bodies, each read back from its file (by descriptor, in file order) as the
 * event loop reports the ranges written, or (descriptor -1) handed over in
 * transferred buffers that go back with the acknowledgement (hash-chunks.ts).
 */
import { createHash, type Hash } from "node:crypto";
import { readSync } from "node:fs";
import { parentPort } from "node:worker_threads";
import { newDigest } from "./hash.js";
import { READ } from "./hash-pool.js";
import type { ChecksumAlgorithm, Checksums } from "./types.js";

type Msg =
  | { t: "open"; id: number; fd: number; md5: boolean; algs: ChecksumAlgorithm[] }
  | { t: "range"; id: number; pos: number; len: number }
  | { t: "buf"; id: number; buf: ArrayBuffer; len: number }
  | { t: "end"; id: number; size: number }
  | { t: "drop"; id: number };

interface Session { fd: number; md5?: Hash; extra: [ChecksumAlgorithm, ReturnType<typeof newDigest>][]; hashed: number }
const sessions = new Map<number, Session>();
const port = parentPort!;
const buf = Buffer.allocUnsafe(READ);

port.on("message", (m: Msg) => {
  if (m.t === "open") {
    sessions.set(m.id, { fd: m.fd, md5: m.md5 ? createHash("md5") : undefined, extra: m.algs.map((a) => [a, newDigest(a)]), hashed: 0 });
    return;
  }
  const s = sessions.get(m.id);
  if (m.t === "drop" || !s) {
    // Answered even for a session already ended, so the caller can close the descriptor.
    if (m.t === "drop") {
      sessions.delete(m.id);
      port.postMessage({ t: "dropped", id: m.id });
    }
    return;
  }
  try {
    if (m.t === "buf") {
      const b = new Uint8Array(m.buf, 0, m.len);
      s.md5?.update(b);
      for (const [, d] of s.extra) d.update(b);
      s.hashed += m.len;
      port.postMessage({ t: "ack", id: m.id, n: m.len, buf: m.buf }, [m.buf]);
    } else if (m.t === "range") {
      for (let off = 0; off < m.len;) {
        const n = readSync(s.fd, buf, 0, Math.min(READ, m.len - off), m.pos + off);
        if (n === 0) throw new Error(`file ended at ${m.pos + off}, ${m.len - off} bytes short of a written range`);
        const b = buf.subarray(0, n);
        s.md5?.update(b);
        for (const [, d] of s.extra) d.update(b);
        off += n;
      }
      s.hashed += m.len;
      port.postMessage({ t: "ack", id: m.id, n: m.len });
    } else {
      if (s.hashed !== m.size) throw new Error(`hashed ${s.hashed} bytes of ${m.size}`);
      const checksums: Checksums = {};
      for (const [a, d] of s.extra) checksums[a] = d.digest().toString("base64");
      sessions.delete(m.id);
      port.postMessage({ t: "done", id: m.id, md5: s.md5?.digest("hex"), checksums });
    }
  } catch (err) {
    sessions.delete(m.id);
    port.postMessage({ t: "error", id: m.id, message: (err as Error).message });
  }
});
