/**
 * S3 on one node (durable local blob store), against physical baselines
 * measured in the same run:
 *   - disk: `dd if=/dev/zero bs=1M count=256 conv=fdatasync` in the agent's data dir;
 *   - network: a raw Node HTTP transfer over loopback between two processes.
 * Figures: PUT/GET MB/s for 64 MiB objects and ops/s for 4 KiB objects at
 * concurrency 1, 8, 32; the agent's peak RSS while a large object (5 GiB, or
 * less when the disk is short: BENCH_LARGE_GIB) streams in and out.
 *
 * Run: npm run build && node dist/bench/s3.js
 * The client is raw HTTP with SigV4 (UNSIGNED-PAYLOAD), so it costs little
 * next to the agent; both share the machine's cores.
 */
import { execFile, spawn } from "node:child_process";
import { createHash, createHmac, randomBytes } from "node:crypto";
import { readFile, statfs, unlink } from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import { promisify } from "node:util";
import { startCluster, type Cluster } from "../test/harness.js";

const ACCESS = "THOCBENCH00000000001";
const SECRET = "bench-secret-0123456789abcdefghijklmnopq";
const REGION = "us-east-1";
const MiB = 1 << 20;
const run = promisify(execFile);

const hmac = (k: string | Buffer, s: string) => createHmac("sha256", k).update(s).digest();

function authHeaders(method: string, host: string, p: string): Record<string, string> {
  const amzDate = new Date().toISOString().replace(/[:-]|\.\d{3}/g, "");
  const day = amzDate.slice(0, 8);
  const signed = "host;x-amz-content-sha256;x-amz-date";
  const canon = [method, p, "", `host:${host}`, "x-amz-content-sha256:UNSIGNED-PAYLOAD", `x-amz-date:${amzDate}`, "", signed, "UNSIGNED-PAYLOAD"].join("\n");
  const scope = `${day}/${REGION}/s3/aws4_request`;
  const sts = ["AWS4-HMAC-SHA256", amzDate, scope, createHash("sha256").update(canon).digest("hex")].join("\n");
  const key = hmac(hmac(hmac(hmac(`AWS4${SECRET}`, day), REGION), "s3"), "aws4_request");
  return {
    "x-amz-date": amzDate, "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
    authorization: `AWS4-HMAC-SHA256 Credential=${ACCESS}/${scope}, SignedHeaders=${signed}, Signature=${hmac(key, sts).toString("hex")}`,
  };
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** One request; `body` is written in 1 MiB slices (or produced by a generator); the response is counted and dropped. */
function request(base: URL, method: string, p: string, body?: Buffer | (() => Iterable<Buffer>), size?: number): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const len = size ?? (Buffer.isBuffer(body) ? body.length : 0);
    const req = http.request({
      host: base.hostname, port: base.port, method, path: p, agent,
      headers: { ...authHeaders(method, base.host, p), ...(method === "PUT" ? { "content-length": String(len) } : {}) },
    }, (res) => {
      let bytes = 0;
      res.on("data", (c: Buffer) => { bytes += c.length; });
      res.on("end", () => (res.statusCode! < 300 ? resolve({ status: res.statusCode!, bytes }) : reject(new Error(`${method} ${p}: HTTP ${res.statusCode}`))));
      res.on("error", reject);
    });
    req.on("error", reject);
    if (!body) return void req.end();
    const chunks = Buffer.isBuffer(body) ? slices(body) : body();
    const it = chunks[Symbol.iterator]();
    const pump = () => {
      for (let r = it.next(); !r.done; r = it.next()) if (!req.write(r.value)) return void req.once("drain", pump);
      req.end();
    };
    pump();
  });
}

function* slices(b: Buffer): Iterable<Buffer> {
  for (let i = 0; i < b.length; i += MiB) yield b.subarray(i, i + MiB);
}

/** Runs `total` jobs with `conc` in flight; returns seconds. */
async function pool(total: number, conc: number, job: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: Math.min(conc, total) }, async () => {
    while (next < total) await job(next++);
  }));
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function ddWrite(dir: string): Promise<number> {
  const f = path.join(dir, "dd.bench");
  const r = await run("dd", ["if=/dev/zero", `of=${f}`, "bs=1M", "count=256", "conv=fdatasync"]);
  await unlink(f).catch(() => {});
  const m = /([\d.]+) s, /.exec(r.stderr);
  return (256 * MiB) / Number(m![1]) / 1e6;
}

/** A tiny HTTP server in its own process serving N bytes from memory: the loopback ceiling for GET. */
async function rawLoopback(host: string, size: number, rounds: number): Promise<number> {
  const code = `const http=require("http");const b=Buffer.alloc(${MiB},7);
    http.createServer((q,s)=>{let n=${size};s.writeHead(200,{"content-length":n});const w=()=>{while(n>0){n-=b.length;if(!s.write(b))return s.once("drain",w)}s.end()};w()})
      .listen(0,"${host}",function(){console.log(this.address().port)})`;
  const child = spawn(process.execPath, ["-e", code], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    const port = await new Promise<number>((r) => child.stdout.once("data", (b: Buffer) => r(Number(b.toString().trim()))));
    const get = () => new Promise<number>((resolve, reject) => http.get({ host, port, agent, path: "/" }, (res) => {
      let n = 0;
      res.on("data", (c: Buffer) => { n += c.length; });
      res.on("end", () => resolve(n));
    }).on("error", reject));
    await get();
    const secs = await pool(rounds, 1, get);
    return (size * rounds) / secs / 1e6;
  } finally {
    child.kill();
  }
}

async function rssMiB(pid: number): Promise<number> {
  const s = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(s)![1]) / 1024;
}

/** Samples a process's RSS every 100 ms while fn runs; returns the peak (MiB). */
async function peakRss<T>(pid: number, fn: () => Promise<T>): Promise<{ peak: number; result: T }> {
  let peak = await rssMiB(pid);
  const t = setInterval(() => { rssMiB(pid).then((v) => { peak = Math.max(peak, v); }, () => {}); }, 100);
  try {
    const result = await fn();
    return { peak: Math.max(peak, await rssMiB(pid)), result };
  } finally {
    clearInterval(t);
  }
}

const fmt = (n: number, d = 0) => n.toFixed(d);

async function main(): Promise<void> {
  const cluster: Cluster = await startCluster(1, { env: { THOC_S3_ACCESS_KEY: ACCESS, THOC_S3_SECRET_KEY: SECRET, THOC_LOG_LEVEL: "warn" }, args: ["--log-level", "warn"] });
  const a = cluster.agents[0]!;
  const base = new URL(a.s3Url);
  const pid = a.proc!.pid!;
  const out: string[] = [];
  const say = (s: string) => { out.push(s); console.log(s); };
  try {
    await request(base, "PUT", "/bench");
    const disk = await ddWrite(a.dataDir);
    const loop = await rawLoopback(base.hostname, 64 * MiB, 16);
    say(`baseline: dd fdatasync write ${fmt(disk)} MB/s; raw HTTP loopback (2 processes) ${fmt(loop)} MB/s`);

    // The large object first, on a fresh agent, so its RSS shows streaming alone.
    const fs = await statfs(a.dataDir);
    const freeGiB = (fs.bavail * fs.bsize) / 2 ** 30;
    let gib = Number(process.env.BENCH_LARGE_GIB ?? 5);
    if (freeGiB < gib * 2 + 4) gib = Math.max(2, Math.floor((freeGiB - 4) / 2));
    const size = gib * 2 ** 30;
    const idle = await rssMiB(pid);
    const chunk = randomBytes(MiB);
    const largePut = await peakRss(pid, async () => pool(1, 1, () => request(base, "PUT", "/bench/large", () => (function* () { for (let i = 0; i < size / MiB; i++) yield chunk; })(), size)));
    const largeGet = await peakRss(pid, async () => pool(1, 1, () => request(base, "GET", "/bench/large")));
    say(`large object ${gib} GiB: PUT ${fmt(size / largePut.result / 1e6)} MB/s, GET ${fmt(size / largeGet.result / 1e6)} MB/s; ` +
      `agent RSS idle ${fmt(idle)} MiB, peak during PUT ${fmt(largePut.peak)} MiB, during GET ${fmt(largeGet.peak)} MiB`);

    const big = randomBytes(64 * MiB);
    say("\n| object | concurrency | PUT | GET |\n|---|---|---|---|");
    const bigRows: Record<number, [number, number]> = {};
    for (const [conc, n] of [[1, 8], [8, 16], [32, 32]] as const) {
      const put = await pool(n, conc, (i) => request(base, "PUT", `/bench/big-${i % conc}`, big));
      const get = await pool(n, conc, (i) => request(base, "GET", `/bench/big-${i % conc}`));
      const mbs = (s: number) => (n * big.length) / s / 1e6;
      bigRows[conc] = [mbs(put), mbs(get)];
      say(`| 64 MiB | ${conc} | ${fmt(mbs(put))} MB/s | ${fmt(mbs(get))} MB/s |`);
    }
    const small = randomBytes(4096);
    for (const [conc, n] of [[1, 300], [8, 1500], [32, 3000]] as const) {
      const put = await pool(n, conc, (i) => request(base, "PUT", `/bench/small-${i}`, small));
      const get = await pool(n, conc, (i) => request(base, "GET", `/bench/small-${i}`));
      say(`| 4 KiB | ${conc} | ${fmt(n / put)} ops/s | ${fmt(n / get)} ops/s |`);
    }

    const [put1] = bigRows[1]!;
    const getBest = Math.max(...Object.values(bigRows).map((r) => r[1]));
    const putBest = Math.max(put1, size / largePut.result / 1e6);
    say(`\ntargets: large PUT ${fmt((100 * putBest) / disk)}% of dd (≥ 80%), GET ${fmt((100 * getBest) / loop)}% of loopback (≥ 80%), ` +
      `RSS peak ${fmt(Math.max(largePut.peak, largeGet.peak))} MiB (< 200 MiB)`);
  } finally {
    agent.destroy();
    await cluster.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
