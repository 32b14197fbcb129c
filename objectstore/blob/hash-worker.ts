/**
 * Worker thread of hash-pool.ts: MD5 and/or requested checksums for many
 * bodies, each handed over in transferred buffers that go back with the
 * acknowledgement (hash-chunks.ts).
 */
import { createHash, type Hash } from "node:crypto";
import { parentPort } from "node:worker_threads";
import { hasher, type Hasher } from "./hash.js";
import type { ChecksumAlgorithm, Checksums } from "./types.js";

type Msg =
  | { t: "open"; id: number; md5: boolean; algs: ChecksumAlgorithm[] }
  | { t: "buf"; id: number; buf: ArrayBuffer; len: number }
  | { t: "end"; id: number; size: number }
  | { t: "drop"; id: number };

interface Session { md5?: Hash; extra: [ChecksumAlgorithm, Hasher][]; hashed: number }
const sessions = new Map<number, Session>();
const port = parentPort!;

port.on("message", (m: Msg) => {
  if (m.t === "open") {
    sessions.set(m.id, { md5: m.md5 ? createHash("md5") : undefined, extra: m.algs.map((a) => [a, hasher(a)]), hashed: 0 });
    return;
  }
  const s = sessions.get(m.id);
  if (m.t === "drop" || !s) {
    // Answered even for a session already ended, so the caller stops waiting for it.
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
    } else {
      if (s.hashed !== m.size) throw new Error(`hashed ${s.hashed} bytes of ${m.size}`);
      const checksums: Checksums = {};
      for (const [a, d] of s.extra) checksums[a] = d.digest();
      sessions.delete(m.id);
      port.postMessage({ t: "done", id: m.id, md5: s.md5?.digest("hex"), checksums });
    }
  } catch (err) {
    sessions.delete(m.id);
    port.postMessage({ t: "error", id: m.id, message: (err as Error).message });
  }
});
