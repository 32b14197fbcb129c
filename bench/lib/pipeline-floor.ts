/**
 * The floor of a replicated PUT on this machine: the least work any Node
 * implementation of N=3 / W=2 does per byte, written plainly with nothing of
 * thoc-node in it, so bench/objectstore.ts can set the agents' figures beside
 * what the same cores, disk and loopback allow.
 *
 * One process per role, as the agents run:
 *  - `replica DIR`: an HTTP server; a PUT's body is hashed (SHA-256, as a
 *    replica verifies it), written to a file in DIR and fdatasync'd before the
 *    answer; a body of at most 64 KiB is appended to the process's one log
 *    file and that is fdatasync'd (as the agents keep small bodies in LevelDB).
 *  - `coordinator DIR [PORT ...]`: an HTTP server; a PUT's body is hashed
 *    with MD5 (the ETag) and SHA-256, stored as a replica stores it and,
 *    chunk by chunk, sent to each replica port over kept-alive connections
 *    (the same Buffer to all, waiting for the slowest to drain); it answers
 *    once its own copy and one replica's are durable (W=2). With no replica
 *    ports it is one node's floor.
 *
 * Each prints its port on stdout when it listens. Nothing here retries,
 * authenticates or keeps metadata: what an agent spends beyond this is what
 * its features cost.
 */
import { createHash } from "node:crypto";
import { open, unlink } from "node:fs/promises";
import http, { type IncomingMessage } from "node:http";
import path from "node:path";

const [role, dir, ...peers] = process.argv.slice(2);
let seq = 0;
const written: string[] = [];
process.on("SIGTERM", () => {
  Promise.all(written.map((f) => unlink(f).catch(() => {}))).finally(() => process.exit(0));
});

/** Bodies up to this size are appended to one log per process and fdatasync'd, as the agents keep them in LevelDB. */
const SMALL = 64 << 10;
let log: ReturnType<typeof open> | undefined;

/**
 * Writes the body to a new file in order and fdatasyncs it (small ones: appends it to the process's log and
 * fdatasyncs that). Files stay until the process is stopped, as stored objects do.
 */
async function store(body: AsyncIterable<Buffer>, hashes: string[], size: number): Promise<string[]> {
  if (size <= SMALL) {
    const hs = hashes.map((a) => createHash(a));
    const parts: Buffer[] = [];
    for await (const c of body) {
      for (const h of hs) h.update(c);
      parts.push(c);
    }
    if (!log) {
      const f = path.join(dir!, `${process.pid}-log`);
      written.push(f);
      log = open(f, "a");
    }
    const fh = await log;
    await fh.write(Buffer.concat(parts));
    await fh.datasync();
    return hs.map((h) => h.digest("hex"));
  }
  const f = path.join(dir!, `${process.pid}-${seq++}`);
  written.push(f);
  const fh = await open(f, "w");
  const hs = hashes.map((a) => createHash(a));
  try {
    for await (const c of body) {
      for (const h of hs) h.update(c);
      await fh.write(c);
    }
    await fh.datasync();
  } finally {
    await fh.close();
  }
  return hs.map((h) => h.digest("hex"));
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** PUTs the chunks of `src` to every peer; resolves with each peer's answer. */
function tee(src: IncomingMessage): { local: AsyncIterable<Buffer>; remote: Promise<void>[] } {
  const reqs = peers.map((p) => http.request({ host: "127.0.0.1", port: Number(p), method: "PUT", path: "/", agent, headers: { "content-length": src.headers["content-length"] ?? "0" } }));
  const remote = reqs.map((r) => new Promise<void>((ok, fail) => {
    r.on("response", (res) => { res.resume(); res.on("end", () => (res.statusCode === 200 ? ok() : fail(new Error(`replica: HTTP ${res.statusCode}`)))); });
    r.on("error", fail);
  }));
  async function* local(): AsyncIterable<Buffer> {
    for await (const c of src as AsyncIterable<Buffer>) {
      // The same Buffer to both; the next chunk waits until the slowest socket took this one.
      const sent = Promise.all(reqs.map((r) => new Promise((d) => r.write(c, d))));
      yield c;
      await sent;
    }
    for (const r of reqs) r.end();
  }
  return { local: local(), remote };
}

const server = http.createServer((req, res) => {
  const done = (err?: unknown) => { res.statusCode = err ? 500 : 200; res.end(err ? String(err) : ""); };
  if (req.method !== "PUT") return done(new Error("PUT only"));
  if (role === "replica") {
    store(req, ["sha256"], Number(req.headers["content-length"])).then(() => done(), done);
    return;
  }
  const { local, remote } = tee(req);
  const own = store(local, ["md5", "sha256"], Number(req.headers["content-length"]));
  // W=2: this node's copy and the first replica's (alone: its own).
  own.then(() => (remote.length ? Promise.any(remote) : undefined)).then(() => done(), done);
  for (const r of remote) r.catch(() => {});
});
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => {
  const a = server.address();
  console.log(typeof a === "object" && a ? a.port : 0);
});
