/**
 * CompleteMultipartUpload on a 3-node cluster (issue 15): Complete writes a
 * manifest that references the parts, so it should cost O(parts) in metadata
 * whatever the object's size (target <= 100 ms for 100 x 64 MiB = 6.4 GiB).
 *
 *  1. Upload BENCH_MPU_PARTS (default 100) parts of 64 MiB (the same random
 *     buffer each time), spread over the nodes, 2 at a time; time Complete
 *     (and a retried Complete, which returns the same object); read the object
 *     back whole and by 3 ranges that cross part boundaries through every
 *     node, checking each against its SHA-256.
 *  2. The same with BENCH_MPU_SMALL_PARTS (default 1,000) parts of 5 MiB, the
 *     store's minimum part size (MIN_PART_SIZE in objectstore/blob/types.ts:
 *     a smaller part but the last is refused with EntityTooSmall); ranges only.
 *  3. DELETE both objects and time until the part sweeper (local preset:
 *     partSweepInterval 2 s, partGrace 3 s) has given the parts' space back
 *     (sum of thoc_objectstore_replica_bytes over the nodes).
 *
 * Run: npm run build && node dist/bench/objectstore-multipart.js
 * (~40 GB of disk at the default sizes: 3 replicas of 6.4 GiB and 5 GiB; the
 * cluster's data dirs are removed at the end).
 */
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import { availableParallelism, loadavg } from "node:os";
import { sigv4, writeBody } from "./common.js";
import { startCluster, waitFor, type AgentProcess, type Cluster } from "../test/harness.js";

const ACCESS = "THOCBENCHMULTIPART01";
const SECRET = "bench-multipart-secret-0123456789abcdef";
const MiB = 1 << 20;
const PARTS = Number(process.env.BENCH_MPU_PARTS ?? 100);
const SMALL_PARTS = Number(process.env.BENCH_MPU_SMALL_PARTS ?? 1000);
const BIG_PART = 64 * MiB;
/** objectstore/blob MIN_PART_SIZE: every part but the last must be at least this large. */
const SMALL_PART = 5 * MiB;
const BUCKET = "mpubench";
/** Parts uploaded at once. */
const UPLOAD_CONC = 2;
const say = (s: string) => console.log(s);
const fmt = (n: number, d = 0) => n.toFixed(d);

const sign = sigv4(ACCESS, SECRET, "us-east-1");
const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

interface Reply { status: number; headers: http.IncomingHttpHeaders; text: string; bytes: number; sha256: string }

/** One signed request; the response body is hashed and its first KiB kept as text. */
function request(a: AgentProcess, method: string, p: string, query: [string, string][] = [], body?: Buffer, headers: Record<string, string> = {}): Promise<Reply> {
  const base = new URL(a.s3Url);
  const q = [...query].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&");
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: base.hostname, port: base.port, method, path: q ? `${p}?${q}` : p, agent,
      headers: { ...sign(method, base.host, p, q), ...headers, ...(body || method === "PUT" || method === "POST" ? { "content-length": String(body?.length ?? 0) } : {}) },
    }, (res) => {
      const h = createHash("sha256");
      let bytes = 0, text = "";
      res.on("data", (c: Buffer) => { bytes += c.length; h.update(c); if (text.length < 1024) text += c.toString("utf8", 0, Math.min(c.length, 1024)); });
      res.on("end", () => {
        const r = { status: res.statusCode!, headers: res.headers, text, bytes, sha256: h.digest("hex") };
        if (r.status >= 300) reject(new Error(`${method} ${a.name} ${p}?${q}: HTTP ${r.status} ${text.slice(0, 300)}`));
        else resolve(r);
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    writeBody(req, body);
  });
}

/** SHA-256 of bytes [s, e] of an object made of `part` repeated. */
function expected(part: Buffer, s: number, e: number): string {
  const h = createHash("sha256");
  for (let o = s; o <= e;) {
    const i = o % part.length, n = Math.min(part.length - i, e - o + 1);
    h.update(part.subarray(i, i + n));
    o += n;
  }
  return h.digest("hex");
}

async function replicaBytes(as: AgentProcess[]): Promise<number> {
  let sum = 0;
  for (const a of as) {
    const text = await (await fetch(`${a.httpUrl}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith("thoc_objectstore_replica_bytes "));
    sum += Number(line?.slice(line.lastIndexOf(" ") + 1) ?? 0);
  }
  return sum;
}

interface Result { complete: number; retry: number; upload: number; listParts: number }

/** Uploads `count` copies of `part`, completes, and checks reads through every node; returns the timings (ms, MB/s). */
async function run(c: Cluster, key: string, part: Buffer, count: number, reads: "whole" | "ranges" | "none"): Promise<Result> {
  const as = c.agents;
  const p = `/${BUCKET}/${key}`;
  const created = await request(as[0]!, "POST", p, [["uploads", ""]]);
  const id = /<UploadId>(.*?)<\/UploadId>/.exec(created.text)?.[1];
  if (!id) throw new Error(`no UploadId in ${created.text}`);
  const etags: string[] = new Array<string>(count);
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: UPLOAD_CONC }, async () => {
    while (next < count) {
      const n = next++;
      const put = () => request(as[n % as.length]!, "PUT", p, [["partNumber", String(n + 1)], ["uploadId", id]], part);
      // One retry, as SDKs do: a part is idempotent, and a loaded machine can time one out.
      const r = await put().catch((err: Error) => { say(`    part ${n + 1}: ${err.message.slice(0, 120)}; retrying`); return put(); });
      etags[n] = String(r.headers.etag);
    }
  }));
  const upload = (count * part.length) / ((performance.now() - t0) / 1000) / 1e6;
  const xml = Buffer.from(`<CompleteMultipartUpload>${etags.map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${e}</ETag></Part>`).join("")}</CompleteMultipartUpload>`);
  const completeOnce = async () => {
    const t = performance.now();
    const r = await request(as[0]!, "POST", p, [["uploadId", id]], xml);
    const ms = performance.now() - t;
    if (!r.text.includes("<CompleteMultipartUploadResult")) throw new Error(`Complete answered ${r.text.slice(0, 300)}`);
    return ms;
  };
  // ListParts reads the same merged listing of the part records Complete starts with: its share of Complete.
  const tl = performance.now();
  await request(as[0]!, "GET", p, [["max-parts", "1000"], ["uploadId", id]]);
  const listParts = performance.now() - tl;
  const complete = await completeOnce();
  const retry = await completeOnce();

  const size = count * part.length;
  const b = part.length;
  const ranges: [number, number][] = [[b - 1000, b + 999], [3 * b - MiB, Math.min(size - 1, 5 * b + MiB)], [size - b - 17, size - 1]];
  for (const a of reads === "none" ? [] : as) {
    const h = await request(a, "HEAD", p);
    if (Number(h.headers["content-length"]) !== size) throw new Error(`HEAD through ${a.name}: Content-Length ${h.headers["content-length"]}, want ${size}`);
    if (reads === "whole") {
      const t = performance.now();
      const g = await request(a, "GET", p);
      const s = (performance.now() - t) / 1000;
      if (g.bytes !== size || g.sha256 !== expected(part, 0, size - 1)) throw new Error(`whole object through ${a.name}: ${g.bytes} bytes, sha256 ${g.sha256}`);
      say(`    whole ${fmt(size / 2 ** 30, 2)} GiB through ${a.name}: byte-exact, ${fmt(size / s / 1e6)} MB/s`);
    }
    for (const [s, e] of ranges) {
      const t = performance.now();
      const g = await request(a, "GET", p, [], undefined, { range: `bytes=${s}-${e}` });
      if (g.status !== 206 || g.bytes !== e - s + 1 || g.sha256 !== expected(part, s, e)) throw new Error(`bytes ${s}-${e} through ${a.name}: HTTP ${g.status}, ${g.bytes} bytes`);
      say(`    bytes ${s}-${e} (${fmt((e - s + 1) / MiB, 1)} MiB, crossing ${Math.floor(e / b) - Math.floor(s / b)} part boundaries) through ${a.name}: byte-exact in ${fmt(performance.now() - t)} ms`);
    }
  }
  return { complete, retry, upload, listParts };
}

async function main(): Promise<void> {
  say(`machine: ${availableParallelism()} cores, Node ${process.version}; load average at start ${loadavg().map((x) => fmt(x, 2)).join(" ")}`);
  const c = await startCluster(3, {
    // Longer idle and peer timeouts than the local preset's 5 s, which cut part uploads on a machine shared with other work.
    env: {
      THOC_S3_ACCESS_KEY: ACCESS, THOC_S3_SECRET_KEY: SECRET, THOC_OBJECTSTORE_ANTI_ENTROPY_INTERVAL: "600s",
      THOC_S3_IDLE_TIMEOUT: "30s", THOC_OBJECTSTORE_PEER_TIMEOUT: "30s",
    },
    args: ["--log-level", "warn"],
  });
  try {
    await waitFor("the bucket can be created", async () => { await request(c.agents[0]!, "PUT", `/${BUCKET}`); return true; }, 60_000, 500);
    const big = randomBytes(BIG_PART);
    // A fresh agent's first Complete also pays for warming up its code paths: warm them with a small upload first.
    await run(c, "warm-up", big.subarray(0, SMALL_PART), 2, "none");
    say(`\n3-node cluster (N=3, W=2, R=2), ${PARTS} x 64 MiB parts (${fmt((PARTS * BIG_PART) / 2 ** 30, 2)} GiB):`);
    const r1 = await run(c, "big", big, PARTS, "whole");
    say(`  upload ${fmt(r1.upload)} MB/s (${UPLOAD_CONC} parts at a time); CompleteMultipartUpload ${fmt(r1.complete, 1)} ms (ListParts of the same parts ${fmt(r1.listParts, 1)} ms), retried ${fmt(r1.retry, 1)} ms`);
    say(`\n${SMALL_PARTS} x 5 MiB parts (MIN_PART_SIZE; ${fmt((SMALL_PARTS * SMALL_PART) / 2 ** 30, 2)} GiB):`);
    const r2 = await run(c, "many", big.subarray(0, SMALL_PART), SMALL_PARTS, "ranges");
    say(`  upload ${fmt(r2.upload)} MB/s; CompleteMultipartUpload ${fmt(r2.complete, 1)} ms (ListParts of the same parts ${fmt(r2.listParts, 1)} ms), retried ${fmt(r2.retry, 1)} ms`);

    const before = await replicaBytes(c.agents);
    const t = performance.now();
    await request(c.agents[1]!, "DELETE", `/${BUCKET}/big`);
    await request(c.agents[2]!, "DELETE", `/${BUCKET}/many`);
    await waitFor("the parts' space is given back", async () => (await replicaBytes(c.agents)) < before * 0.01, 600_000, 500);
    say(`\nboth objects deleted: the sweepers gave back ${fmt(before / 2 ** 30, 1)} GiB of replicas in ${fmt((performance.now() - t) / 1000, 1)} s (partSweepInterval 2 s, partGrace 3 s)`);
    say(`\n| | Complete | ListParts (its listing) | retried Complete | load average |\n|---|---|---|---|---|`);
    say(`| ${PARTS} x 64 MiB | ${fmt(r1.complete, 1)} ms | ${fmt(r1.listParts, 1)} ms | ${fmt(r1.retry, 1)} ms | ${loadavg().map((x) => fmt(x, 1)).join(" ")} (at the end) |`);
    say(`| ${SMALL_PARTS} x 5 MiB | ${fmt(r2.complete, 1)} ms | ${fmt(r2.listParts, 1)} ms | ${fmt(r2.retry, 1)} ms | |`);
  } finally {
    await c.stop();
    agent.destroy();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
