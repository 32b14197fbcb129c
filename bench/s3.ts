/**
 * S3 on one agent (the replicated store on a ring of one), against physical
 * baselines measured in the same run:
 *   - disk: `dd if=/dev/zero bs=1M count=256 conv=fdatasync` in the agent's
 *     data dir (the filesystem the replica store writes to);
 *   - network: raw Node HTTP transfers over loopback between two processes,
 *     download (the GET baseline) and upload (what any PUT must also carry);
 *   - CPU: MD5 and CRC-32 of 256 MiB on one core (every PUT needs the MD5,
 *     the ETag, and the store's CRC-32).
 * The 64 MiB PUT and GET are measured in ROUNDS paired rounds, each next to
 * its own dd / loopback measurement, and reported as medians, since other
 * work on the machine makes single figures swing.
 * Each round also gives the server's and the client's CPU time per MiB and
 * the ceiling they imply (all cores busy with nothing else: cores / CPU per
 * MiB), which says whether a PUT is bound by the disk or by the CPU.
 * Also: 64 MiB and 4 KiB objects at concurrency 8 and 32 (4 KiB: 1, 8, 32);
 * the agent's peak RSS while a large object (5 GiB, or less when the disk is
 * short: BENCH_LARGE_GIB) streams in and out; the load average.
 *
 * Run: npm run build && node dist/bench/s3.js   (BENCH_ROUNDS=5 by default)
 * BENCH_ONLY=small: only the 4 KiB table, BENCH_ROUNDS rounds, medians (to compare two builds).
 * The client is raw HTTP with SigV4 (UNSIGNED-PAYLOAD), so it costs little
 * next to the agent; both share the machine's cores.
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readFile, statfs, unlink } from "node:fs/promises";
import http from "node:http";
import { availableParallelism, loadavg } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { cpuSeconds, rawServer, sigv4 } from "./common.js";
import { crc32 } from "../objectstore/index.js";
import { startCluster, type Cluster } from "../test/harness.js";

const ACCESS = "THOCBENCH00000000001";
const SECRET = "bench-secret-0123456789abcdefghijklmnopq";
const REGION = "us-east-1";
const MiB = 1 << 20;
const BIG = 64 * MiB;
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 5));
/** 64 MiB transfers per round and direction. */
const PER_ROUND = 4;
const run = promisify(execFile);

const authHeaders = sigv4(ACCESS, SECRET, REGION);

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

/** One core hashing 256 MiB from memory (MB/s). */
function hashSpeed(fn: (b: Buffer) => void): number {
  const b = randomBytes(MiB);
  fn(b);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < 256; i++) fn(b);
  return (256 * MiB) / (Number(process.hrtime.bigint() - t0) / 1e9) / 1e6;
}

function md5Speed(): number {
  const h = createHash("md5");
  return hashSpeed((b) => h.update(b));
}

function crcSpeed(): number {
  let c = 0;
  return hashSpeed((b) => { c = crc32(b, c); });
}

async function rssMiB(pid: number): Promise<number> {
  const s = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(s)![1]) / 1024;
}

/** Busy CPU seconds of the whole machine (every process, ours and others'). */
async function machineBusy(): Promise<number> {
  const v = (await readFile("/proc/stat", "utf8")).split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  return (v.reduce((a, b) => a + b, 0) - v[3]! - v[4]!) / 100;
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
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const load = () => loadavg().map((x) => x.toFixed(2)).join(" ");

/**
 * BENCH_ONLY=small: the 4 KiB PUT/GET table alone, ROUNDS times, medians and spread. Small requests swing
 * by 10-20% between single runs on a shared 2-core machine, too much to compare two builds by one run.
 */
async function smallRounds(base: URL, say: (s: string) => void): Promise<void> {
  const small = randomBytes(4096);
  const plan = [[1, 300], [8, 1500], [32, 3000]] as const;
  const put = plan.map(() => [] as number[]), get = plan.map(() => [] as number[]);
  for (let r = 0; r < ROUNDS; r++) {
    for (const [k, [conc, n]] of plan.entries()) {
      put[k]!.push(n / await pool(n, conc, (i) => request(base, "PUT", `/bench/small-${i}`, small)));
      get[k]!.push(n / await pool(n, conc, (i) => request(base, "GET", `/bench/small-${i}`)));
    }
  }
  const show = (xs: number[]) => `${fmt(median(xs))} ops/s (${fmt(Math.min(...xs))}-${fmt(Math.max(...xs))})`;
  say(`\n4 KiB objects, median of ${ROUNDS} rounds (min-max)\n| concurrency | PUT | GET |\n|---|---|---|`);
  for (const [k, [conc]] of plan.entries()) say(`| ${conc} | ${show(put[k]!)} | ${show(get[k]!)} |`);
  // A c=1 round of 300 lasts a fraction of a second; 6,000 GETs in a row say more about per-request cost.
  const t = await pool(6000, 1, (i) => request(base, "GET", `/bench/small-${i % 300}`));
  say(`4 KiB GET c=1, 6,000 in a row: ${fmt(6000 / t)} ops/s (${fmt((t / 6000) * 1e6)} µs a request)`);
  say(`load average at end ${load()}`);
}

async function main(): Promise<void> {
  randomBig = randomBytes(BIG);
  const cluster: Cluster = await startCluster(1, { env: { THOC_S3_ACCESS_KEY: ACCESS, THOC_S3_SECRET_KEY: SECRET, THOC_LOG_LEVEL: "warn" }, args: ["--log-level", "warn"] });
  const a = cluster.agents[0]!;
  const base = new URL(a.s3Url);
  const pid = a.proc!.pid!;
  const raw = await rawServer(base.hostname);
  const say = (s: string) => console.log(s);
  try {
    say(`machine: ${availableParallelism()} cores, Node ${process.version}; load average at start ${load()}`);
    await request(base, "PUT", "/bench");
    if (process.env.BENCH_ONLY === "small") { await smallRounds(base, say); return; }
    const md5 = md5Speed(), crc = crcSpeed();
    const ups: number[] = [];
    for (let i = 0; i < 3; i++) ups.push((PER_ROUND * BIG) / (await pool(PER_ROUND, 1, () => request(raw.base, "PUT", "/", randomBig))) / 1e6);
    const upload = median(ups);
    say(`one core: MD5 ${fmt(md5)} MB/s, CRC-32 ${fmt(crc)} MB/s; raw HTTP upload over loopback (2 processes, body dropped) ${fmt(upload)} MB/s`);

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
    await request(base, "DELETE", "/bench/large");
    say(`large object ${gib} GiB: PUT ${fmt(size / largePut.result / 1e6)} MB/s, GET ${fmt(size / largeGet.result / 1e6)} MB/s; ` +
      `agent RSS idle ${fmt(idle)} MiB, peak during PUT ${fmt(largePut.peak)} MiB, during GET ${fmt(largeGet.peak)} MiB`);

    const agentRounds = await pairedRounds("the agent", base, pid, a.dataDir, raw.base, say);

    say("\n| object | concurrency | PUT | GET |\n|---|---|---|---|");
    for (const [conc, n] of [[8, 16], [32, 32]] as const) {
      const put = await pool(n, conc, (i) => request(base, "PUT", `/bench/big-${i % conc}`, randomBig));
      const get = await pool(n, conc, (i) => request(base, "GET", `/bench/big-${i % conc}`));
      const mbs = (s: number) => (n * BIG) / s / 1e6;
      say(`| 64 MiB | ${conc} | ${fmt(mbs(put))} MB/s | ${fmt(mbs(get))} MB/s |`);
    }
    const small = randomBytes(4096);
    for (const [conc, n] of [[1, 300], [8, 1500], [32, 3000]] as const) {
      const put = await pool(n, conc, (i) => request(base, "PUT", `/bench/small-${i}`, small));
      const get = await pool(n, conc, (i) => request(base, "GET", `/bench/small-${i}`));
      say(`| 4 KiB | ${conc} | ${fmt(n / put)} ops/s | ${fmt(n / get)} ops/s |`);
    }

    say(`\ntargets: 64 MiB PUT ${fmt(100 * agentRounds.putRatio)}% of dd (≥ 80%), GET ${fmt(100 * agentRounds.getRatio)}% of loopback (≥ 80%) ` +
      `RSS peak ${fmt(Math.max(largePut.peak, largeGet.peak))} MiB (< 200 MiB); load average at end ${load()}`);
  } finally {
    raw.stop();
    agent.destroy();
    await cluster.stop();
  }
}

interface RoundsResult { putRatio: number; getRatio: number }

/** Paired rounds: each PUT figure beside a dd run in dataDir, each GET figure beside a loopback run, same minute. */
async function pairedRounds(label: string, base: URL, pid: number, dataDir: string, rawBase: URL, say: (s: string) => void): Promise<RoundsResult> {
  say(`\n64 MiB objects, concurrency 1, ${PER_ROUND} per round, each round beside its own baseline — ${label}:\n` +
    "| round | dd fdatasync | PUT | PUT/dd | loopback | GET | GET/loopback | server CPU per MiB PUT / GET | client CPU per MiB PUT | CPU ceiling for PUT | machine busy during PUT | load |\n|---|---|---|---|---|---|---|---|---|---|---|---|");
  const rows: { dd: number; put: number; loop: number; get: number; cpuPut: number; cpuGet: number; client: number; ceiling: number }[] = [];
  const cores = availableParallelism();
  for (let r = 0; r < ROUNDS; r++) {
    const dd = await ddWrite(dataDir);
    const c0 = await cpuSeconds(pid), m0 = await machineBusy(), u0 = process.cpuUsage();
    const tPut = await pool(PER_ROUND, 1, (i) => request(base, "PUT", `/bench/r${r}-${i}`, randomBig));
    const c1 = await cpuSeconds(pid), m1 = await machineBusy(), u1 = process.cpuUsage(u0);
    const loop = (PER_ROUND * BIG) / (await pool(PER_ROUND, 1, () => request(rawBase, "GET", `/${BIG}`))) / 1e6;
    const c2 = await cpuSeconds(pid);
    const tGet = await pool(PER_ROUND, 1, (i) => request(base, "GET", `/bench/r${r}-${i}`));
    const c3 = await cpuSeconds(pid);
    for (let i = 0; i < PER_ROUND; i++) await request(base, "DELETE", `/bench/r${r}-${i}`);
    const mib = (PER_ROUND * BIG) / MiB;
    const cpuPut = ((c1 - c0) * 1000) / mib, client = (u1.user + u1.system) / 1000 / mib;
    // What the CPU alone allows: every core busy with nothing but this PUT's server and client work.
    const ceiling = (cores * 1000 * MiB) / (cpuPut + client) / 1e6;
    const row = { dd, put: (PER_ROUND * BIG) / tPut / 1e6, loop, get: (PER_ROUND * BIG) / tGet / 1e6, cpuPut, cpuGet: ((c3 - c2) * 1000) / mib, client, ceiling };
    rows.push(row);
    say(`| ${r + 1} | ${fmt(dd)} MB/s | ${fmt(row.put)} MB/s | ${fmt((100 * row.put) / dd)}% | ${fmt(loop)} MB/s | ${fmt(row.get)} MB/s | ${fmt((100 * row.get) / loop)}% | ` +
      `${fmt(cpuPut, 2)} / ${fmt(row.cpuGet, 2)} ms | ${fmt(client, 2)} ms | ${fmt(ceiling)} MB/s | ${fmt((m1 - m0) / tPut, 2)} of ${cores} cores | ${loadavg()[0]!.toFixed(2)} |`);
  }
  const med = (k: keyof (typeof rows)[number]) => median(rows.map((x) => x[k]));
  const putRatio = median(rows.map((x) => x.put / x.dd)), getRatio = median(rows.map((x) => x.get / x.loop));
  say(`| median | ${fmt(med("dd"))} MB/s | ${fmt(med("put"))} MB/s | ${fmt(100 * putRatio)}% | ${fmt(med("loop"))} MB/s | ${fmt(med("get"))} MB/s | ${fmt(100 * getRatio)}% | ` +
    `${fmt(med("cpuPut"), 2)} / ${fmt(med("cpuGet"), 2)} ms | ${fmt(med("client"), 2)} ms | ${fmt(med("ceiling"))} MB/s (${fmt((100 * med("ceiling")) / med("dd"))}% of dd) | | |`);
  return { putRatio, getRatio };
}

/** The 64 MiB body every PUT sends (random, so nothing on the way can shortcut it); made in main(). */
let randomBig = Buffer.alloc(0);

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
