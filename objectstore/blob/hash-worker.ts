/** Worker thread of hash-pool.ts: MD5 and requested checksums for many bodies, each hashed in place in its shared ring. */
import { createHash, type Hash } from "node:crypto";
import { parentPort } from "node:worker_threads";
import { newDigest } from "./hash.js";
import { SLOT } from "./hash-pool.js";
import type { ChecksumAlgorithm, Checksums } from "./types.js";

type Msg =
  | { t: "open"; id: number; algs: ChecksumAlgorithm[]; sab: SharedArrayBuffer }
  | { t: "data"; id: number; slot: number; len: number }
  | { t: "end"; id: number }
  | { t: "drop"; id: number };

interface Session { md5: Hash; extra: [ChecksumAlgorithm, ReturnType<typeof newDigest>][]; ring: Uint8Array }
const sessions = new Map<number, Session>();
const port = parentPort!;

port.on("message", (m: Msg) => {
  if (m.t === "open") {
    sessions.set(m.id, { md5: createHash("md5"), extra: m.algs.map((a) => [a, newDigest(a)]), ring: new Uint8Array(m.sab) });
    return;
  }
  const s = sessions.get(m.id);
  if (!s) return;
  if (m.t === "data") {
    const b = s.ring.subarray(m.slot * SLOT, m.slot * SLOT + m.len);
    s.md5.update(b);
    for (const [, d] of s.extra) d.update(b);
    port.postMessage({ t: "ack", id: m.id });
  } else if (m.t === "end") {
    const checksums: Checksums = {};
    for (const [a, d] of s.extra) checksums[a] = d.digest().toString("base64");
    sessions.delete(m.id);
    port.postMessage({ t: "done", id: m.id, md5: s.md5.digest("hex"), checksums });
  } else {
    sessions.delete(m.id);
  }
});
