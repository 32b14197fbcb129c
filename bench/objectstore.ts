/**
 * The replicated object store (issue 5): what N=3 / W=2 costs against one
 * node. Repair (idle anti-entropy, re-replication after a node is lost for
 * good) is measured by bench/objectstore-repair.ts.
 *
 *  1. Throughput, in one run: a 1-node and a 3-node cluster, each driven by a
 *     raw-HTTP SigV4 client (UNSIGNED-PAYLOAD, copied from bench/s3.ts) that
 *     spreads requests over all nodes: 64 MiB PUT/GET (MB/s) and 4 KiB PUT/GET
 *     (ops/s, p50/p99) at concurrency 1, 8 and 32. Beside them, physical
 *     baselines measured in the same run: `dd bs=1M count=256
 *     conv=fdatasync` in the data dir's filesystem, alone and three at once
 *     (three replicas on one disk), raw Node HTTP loopback transfers
 *     between two processes, and the replicated-PUT floor
 *     (bench/lib/pipeline-floor.ts: plain Node processes doing only what an
 *     N=3 / W=2 PUT must: 64 MiB at c=1 and c=8 with their CPU per MiB, and
 *     4 KiB on one node and three, the bound on the 3-node / 1-node ratio).
 *     All nodes of a cluster share this machine's
 *     disk and cores, so a 3-node PUT pays 3 disk writes and 3 loopback
 *     transfers per byte on the same hardware.
 *
 * Run: npm run build && node dist/bench/objectstore.js
 * Knobs: BENCH_BIG_COUNTS (64 MiB objects at concurrency 1,8,32; default
 * 4,8,32), BENCH_SMALL_COUNTS (default 300,1500,3000), BENCH_AE_INTERVAL (anti-entropy interval of the
 * throughput clusters, default 600s: the local preset's 5 s costs most of a core there),
 * BENCH_ONLY=small (only the 4 KiB rows: no baselines, no 64 MiB objects), BENCH_ONLY=big (only the
 * 64 MiB rows and the baselines; a concurrency whose count is 0 is skipped), BENCH_NODES (cluster
 * sizes, default 1,3), BENCH_SMALL_ROUNDS (4 KiB rounds per cluster, default 1: each row then
 * gives the median of the rounds' ops/s, p50 and p99).
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, unlink } from "node:fs/promises";
import http from "node:http";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { cpuSeconds, rawServer, s3Requester } from "./common.js";
import { startCluster, sleep, waitFor, type AgentProcess, type Cluster } from "../test/harness.js";

const ACCESS = "THOCBENCHOBJSTORE001";
const SECRET = "bench-objstore-secret-0123456789abcdefgh";
const REGION = "us-east-1";
const MiB = 1 << 20;
const BIG = 64 * MiB;
const CONCS = [1, 8, 32] as const;
const counts = (v: string | undefined, d: number[]) => (v ? v.split(",").map(Number) : d);
const BIG_COUNTS = counts(process.env.BENCH_BIG_COUNTS, [4, 8, 32]);
const SMALL_COUNTS = counts(process.env.BENCH_SMALL_COUNTS, [300, 1500, 3000]);
/** Anti-entropy interval for the throughput clusters: the production default, not the local preset's 5 s (see idleCpu). */
const AE_THROUGHPUT = process.env.BENCH_AE_INTERVAL ?? "600s";
/** BENCH_ONLY=small: the 4 KiB rows alone (latency work: no dd, no loopback baselines, no 64 MiB objects). */
const SMALL_ONLY = process.env.BENCH_ONLY === "small";
/** BENCH_ONLY=big: the 64 MiB rows alone (CPU per MiB of the bulk data path), with the baselines. */
const BIG_ONLY = process.env.BENCH_ONLY === "big";
const NODES = counts(process.env.BENCH_NODES, [1, 3]);
const SMALL_ROUNDS = Math.max(1, Number(process.env.BENCH_SMALL_ROUNDS ?? 1));
const run = promisify(execFile);
const say = (s: string) => console.log(s);
const fmt = (n: number, d = 0) => n.toFixed(d);
const mb = (bytes: number, s: number) => bytes / s / 1e6;

// ---- SigV4 raw-HTTP client (as bench/s3.ts) ----


const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const request = s3Requester(ACCESS, SECRET, REGION, agent);

/** Runs `total` jobs with `conc` in flight; returns seconds and each job's latency (ms). */
async function pool(total: number, conc: number, job: (i: number) => Promise<unknown>): Promise<{ s: number; lat: number[] }> {
  let next = 0;
  const lat: number[] = [];
  const t0 = performance.now();
  await Promise.all(Array.from({ length: Math.min(conc, total) }, async () => {
    while (next < total) {
      const i = next++;
      const t = performance.now();
      await job(i);
      lat.push(performance.now() - t);
    }
  }));
  return { s: (performance.now() - t0) / 1000, lat };
}

const pct = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};

// ---- physical baselines ----

async function dd(dir: string, name: string): Promise<number> {
  const f = path.join(dir, name);
  const r = await run("dd", ["if=/dev/zero", `of=${f}`, "bs=1M", "count=256", "conv=fdatasync"]);
  await unlink(f).catch(() => {});
  return mb(256 * MiB, Number(/([\d.]+) s, /.exec(r.stderr)![1]));
}

interface Floor { c1: number; c8: number; cpu1: number; cpu8: number }

/** Starts the floor's processes: a coordinator with `replicas` replicas; its URL, the processes' CPU seconds, stop. */
async function startFloor(dir: string, replicas: number): Promise<{ base: URL; cpu: () => Promise<number>; stop: () => void }> {
  const procs: ChildProcess[] = [];
  const start = async (args: string[]) => {
    const p = spawn(process.execPath, [FLOOR, ...args], { stdio: ["ignore", "pipe", "inherit"] });
    procs.push(p);
    return new Promise<string>((r) => p.stdout!.once("data", (b: Buffer) => r(b.toString().trim())));
  };
  const ports = await Promise.all(Array.from({ length: replicas }, () => start(["replica", dir])));
  const base = new URL(`http://127.0.0.1:${await start(["coordinator", dir, ...ports])}`);
  return {
    base,
    cpu: async () => (await Promise.all(procs.map((p) => cpuSeconds(p.pid!)))).reduce((a, b) => a + b, 0),
    stop: () => { for (const p of procs) p.kill(); },
  };
}

/** 4 KiB PUTs on the floor, one node and three: p50 at c=1 and ops/s at c=32 (the bound on the agents' ratio). */
async function smallFloor(dir: string, count1: number, count32: number): Promise<string> {
  const small = randomBytes(4096);
  const out: string[] = [];
  const ops: number[] = [];
  for (const replicas of [0, 2]) {
    const f = await startFloor(dir, replicas);
    try {
      const one = await pool(count1, 1, (i) => request(f.base, "PUT", `/s1-${i}`, small));
      const many = await pool(count32, 32, (i) => request(f.base, "PUT", `/s32-${i}`, small));
      ops.push(count32 / many.s);
      out.push(`${replicas ? "3 nodes" : "1 node"}: p50 ${fmt(pct(one.lat, 0.5), 2)} ms at c=1, ${fmt(count32 / many.s)} ops/s at c=32`);
    } finally {
      f.stop();
    }
  }
  return `${out.join("; ")}; 3 / 1 at c=32: ${fmt(ops[1]! / ops[0]!, 2)}`;
}
interface Baseline { dd1: number; dd3: number; up: number; down: number; floor: Floor; load: number }

const FLOOR = fileURLToPath(new URL("./lib/pipeline-floor.js", import.meta.url));

/** The replicated-PUT floor (bench/lib/pipeline-floor.ts): a plain coordinator and two replicas, 64 MiB PUTs at c=1 and c=8, MB/s and CPU per MiB of the three processes. */
async function floor(dir: string, body: Buffer): Promise<Floor> {
  const f = await startFloor(dir, 2);
  try {
    const one = async (count: number, conc: number) => {
      const c0 = await f.cpu();
      const r = await pool(count, conc, (i) => request(f.base, "PUT", `/f${i}`, body));
      return { mbs: mb(count * BIG, r.s), ms: ((await f.cpu()) - c0) * 1000 / (count * BIG / MiB) };
    };
    const a = await one(4, 1);
    const b = await one(8, 8);
    return { c1: a.mbs, c8: b.mbs, cpu1: a.ms, cpu8: b.ms };
  } finally {
    f.stop();
  }
}

async function baselines(dir: string, raw: URL, body: Buffer): Promise<Baseline> {
  const dd1 = await dd(dir, "dd.bench");
  const t0 = performance.now();
  await Promise.all([0, 1, 2].map((i) => dd(dir, `dd${i}.bench`)));
  const dd3 = mb(3 * 256 * MiB, (performance.now() - t0) / 1000);
  const up = mb(4 * BIG, (await pool(4, 1, () => request(raw, "PUT", "/", body))).s);
  const down = mb(4 * BIG, (await pool(4, 1, () => request(raw, "GET", `/${BIG}`))).s);
  return { dd1, dd3, up, down, floor: await floor(dir, body), load: loadavg()[0]! };
}

// ---- cluster helpers ----

const agentsCpu = async (as: AgentProcess[]) => (await Promise.all(as.map((a) => cpuSeconds(a.proc!.pid!)))).reduce((x, y) => x + y, 0);

interface RingJson { nodes: { name: string; state: string }[] }
async function ring(a: AgentProcess): Promise<RingJson> {
  const r = await a.cli(["ring", "--json"]);
  if (r.code !== 0) throw new Error(`ring on ${a.name}: ${r.stderr}`);
  return JSON.parse(r.stdout) as RingJson;
}

/** Waits until every agent's ring shows exactly `up` as up (and `removed`, if given, as removed). */
async function waitRing(as: AgentProcess[], up: string[], removed: string[] = [], timeoutMs = 60_000): Promise<void> {
  for (const a of as) {
    await waitFor(`${a.name}'s ring shows ${up.join(",")} up`, async () => {
      const v = await ring(a);
      const ups = v.nodes.filter((n) => n.state === "up").map((n) => n.name).sort().join();
      return ups === [...up].sort().join() && removed.every((x) => v.nodes.some((n) => n.name === x && n.state === "removed"));
    }, timeoutMs, 250);
  }
}

async function cluster(n: number, logLevel: string, env: Record<string, string> = {}): Promise<Cluster> {
  const c = await startCluster(n, { env: { THOC_S3_ACCESS_KEY: ACCESS, THOC_S3_SECRET_KEY: SECRET, ...env }, args: ["--log-level", logLevel] });
  await waitRing(c.agents, c.agents.map((a) => a.name));
  return c;
}

/** Min and max of the 1-minute load average since the last reset, sampled every 2 s. */
class LoadSampler {
  min = Infinity; max = 0;
  private t = setInterval(() => this.sample(), 2000);
  constructor() { this.sample(); }
  sample() { const l = loadavg()[0]!; this.min = Math.min(this.min, l); this.max = Math.max(this.max, l); }
  text() { return `${fmt(this.min, 1)}–${fmt(this.max, 1)}`; }
  reset() { this.min = Infinity; this.max = 0; this.sample(); }
  stop() { clearInterval(this.t); }
}

/** Cores the agents use while nothing is asked of them (background work: gossip, ring sync, anti-entropy). */
async function idleCpu(as: AgentProcess[], ms = 10_000): Promise<number> {
  const c0 = await agentsCpu(as);
  await sleep(ms);
  return (await agentsCpu(as) - c0) / (ms / 1000);
}

// ---- 1. throughput ----

interface Row { label: string; value: number; unit: string; extra?: string }

/** Failed requests per measurement (counted, not fatal: a benchmark should show them). */
const failures: string[] = [];
function counted(what: string, fn: () => Promise<unknown>): () => Promise<boolean> {
  return () => fn().then(() => true, (err: unknown) => {
    failures.push(`${what}: ${(err as Error).message}`);
    return false;
  });
}
/** Runs the jobs, counting failures; returns the pool result and how many succeeded. */
async function measured(what: string, count: number, conc: number, job: (i: number) => Promise<unknown>): Promise<{ s: number; lat: number[]; ok: number }> {
  let ok = 0;
  const r = await pool(count, conc, async (i) => { if (await counted(what, () => job(i))()) ok++; });
  return { ...r, ok };
}
const failNote = (count: number, ok: number) => (ok < count ? `, ${count - ok} of ${count} FAILED` : "");

async function throughput(n: number, body: Buffer, load: LoadSampler): Promise<Row[]> {
  const c = await cluster(n, "warn", { THOC_OBJECTSTORE_ANTI_ENTROPY_INTERVAL: AE_THROUGHPUT });
  const idle = await idleCpu(c.agents);
  say(`  ${n}-node cluster (antiEntropyInterval ${AE_THROUGHPUT}), idle: agents use ${fmt(idle, 2)} cores together`);
  const bases = c.agents.map((a) => new URL(a.s3Url));
  const via = (i: number) => bases[i % bases.length]!;
  const rows: Row[] = [];
  load.reset();
  try {
    await request(bases[0]!, "PUT", "/bench");
    // Warm-up, not measured: a PUT and a GET through each node first, so the rows measure agents whose code V8 has
    // compiled (c=1 runs only 4 objects, so cold first requests through each fresh agent weighed on it).
    if (!SMALL_ONLY) {
      for (const [i, b] of bases.entries()) {
        await request(b, "PUT", `/bench/warm-${i}`, body).catch(() => {});
        await request(b, "GET", `/bench/warm-${i}`).catch(() => {});
        await request(b, "DELETE", `/bench/warm-${i}`).catch(() => {});
      }
    }
    for (const [k, conc] of SMALL_ONLY ? [] : CONCS.entries()) {
      const count = BIG_COUNTS[k]!;
      if (count === 0) continue;
      const c0 = await agentsCpu(c.agents);
      const put = await measured(`${n}-node 64 MiB PUT c=${conc}`, count, conc, (i) => request(via(i), "PUT", `/bench/big-${conc}-${i}`, body));
      const c1 = await agentsCpu(c.agents);
      const get = await measured(`${n}-node 64 MiB GET c=${conc}`, count, conc, (i) => request(via(i + 1), "GET", `/bench/big-${conc}-${i}`));
      const c2 = await agentsCpu(c.agents);
      // Also net of the agents' idle rate over the same time: on a loaded machine a slow PUT is mostly background
      // work (gossip, timers; 0.15–0.25 cores for 3 agents at load 10–20), e.g. 52 of 84 ms per MiB at 4 MB/s.
      const perMiB = (sec: number, ok: number) => (sec * 1000 * MiB) / Math.max(1, ok * BIG);
      const cpu = (sec: number, s: number, ok: number) => `${fmt(perMiB(sec, ok), 1)} ms CPU/MiB, ${fmt(perMiB(sec - idle * s, ok), 1)} net of idle`;
      rows.push({ label: `64 MiB PUT, c=${conc}`, value: mb(put.ok * BIG, put.s), unit: "MB/s", extra: cpu(c1 - c0, put.s, put.ok) + failNote(count, put.ok) });
      rows.push({ label: `64 MiB GET, c=${conc}`, value: mb(get.ok * BIG, get.s), unit: "MB/s", extra: cpu(c2 - c1, get.s, get.ok) + failNote(count, get.ok) });
      for (let i = 0; i < count; i++) await request(via(i), "DELETE", `/bench/big-${conc}-${i}`).catch(() => {});
    }
    const small = randomBytes(4096);
    for (const [k, conc] of BIG_ONLY ? [] : CONCS.entries()) {
      const count = SMALL_COUNTS[k]!;
      // Each round: its ops/s, p50, p99 and failures; a row gives the median of each over the rounds.
      const rounds: { put: number[]; get: number[] } = { put: [], get: [] };
      const stats = { put: [] as [number, number, number][], get: [] as [number, number, number][] };
      let failed = { put: 0, get: 0 };
      for (let round = 0; round < SMALL_ROUNDS; round++) {
        const put = await measured(`${n}-node 4 KiB PUT c=${conc}`, count, conc, (i) => request(via(i), "PUT", `/bench/small-${conc}-${i}`, small));
        const get = await measured(`${n}-node 4 KiB GET c=${conc}`, count, conc, (i) => request(via(i + 1), "GET", `/bench/small-${conc}-${i}`));
        stats.put.push([put.ok / put.s, pct(put.lat, 0.5), pct(put.lat, 0.99)]);
        stats.get.push([get.ok / get.s, pct(get.lat, 0.5), pct(get.lat, 0.99)]);
        failed = { put: failed.put + count - put.ok, get: failed.get + count - get.ok };
        rounds.put.push(pct(put.lat, 0.5));
        rounds.get.push(pct(get.lat, 0.5));
      }
      const med = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)]!; };
      const col = (xs: [number, number, number][], j: number) => med(xs.map((x) => x[j]!));
      const extra = (what: "put" | "get") => {
        const xs = stats[what];
        const each = SMALL_ROUNDS > 1 ? `; rounds' p50 ${rounds[what].map((x) => fmt(x, 2)).join(", ")}` : "";
        return `p50 ${fmt(col(xs, 1), 2)} / p99 ${fmt(col(xs, 2), 1)} ms${each}${failNote(count * SMALL_ROUNDS, count * SMALL_ROUNDS - failed[what])}`;
      };
      rows.push({ label: `4 KiB PUT, c=${conc}`, value: col(stats.put, 0), unit: "ops/s", extra: extra("put") });
      rows.push({ label: `4 KiB GET, c=${conc}`, value: col(stats.get, 0), unit: "ops/s", extra: extra("get") });
    }
    // Server-side view of failures (warn and error lines), to tell them from client-side races.
    const bad = c.agents.flatMap((a) => a.logs().filter((l) => Number(l.level) >= 40).map((l) => `${a.name} ${String(l.msg)}: ${JSON.stringify(l.err ?? l.code ?? "").slice(0, 200)}`));
    const distinct = new Map<string, number>();
    for (const b of bad) distinct.set(b, (distinct.get(b) ?? 0) + 1);
    if (bad.length) say(`  ${n}-node agents logged ${bad.length} warn/error lines: ${[...distinct].slice(0, 5).map(([k, v]) => `${v} x ${k}`).join(" | ")}`);
  } finally {
    await c.stop();
  }
  say(`  ${n}-node cluster done; load average during it ${load.text()}`);
  return rows;
}

async function main(): Promise<void> {
  const load = new LoadSampler();
  const body = randomBytes(BIG);
  say(`machine: ${availableParallelism()} cores, Node ${process.version}; load average at start ${loadavg().map((x) => fmt(x, 2)).join(" ")}`);
  say("every node of a cluster runs on this one machine: one disk, the same cores, loopback between nodes");
  try {
    const dir = await mkdtemp(path.join(tmpdir(), "thoc-bench-")); // the filesystem the agents' data dirs live on
    const raw = await rawServer("127.0.0.1");
    try {
      const b0 = SMALL_ONLY ? undefined : await baselines(dir, raw.base, body);
      const results: Row[][] = [];
      for (const n of NODES) {
        const rows = await throughput(n, body, load);
        for (const r of rows) say(`    ${r.label}: ${fmt(r.value)} ${r.unit} (${r.extra})`);
        results.push(rows);
      }
      const b1 = SMALL_ONLY ? undefined : await baselines(dir, raw.base, body);
      if (!BIG_ONLY) say(`\nsmall-object floor (bench/lib/pipeline-floor.ts, 4 KiB PUT, body appended to a log and fdatasync'd): ${await smallFloor(dir, SMALL_COUNTS[0]!, SMALL_COUNTS[2]!)}`);
      if (b0 && b1) {
        const bl = (f: (b: Baseline) => number) => `${fmt(f(b0))} / ${fmt(f(b1))}`;
        say("\nphysical baselines (before / after the clusters):");
        say(`  dd bs=1M count=256 conv=fdatasync: ${bl((b) => b.dd1)} MB/s; three at once (3 replicas on one disk): ${bl((b) => b.dd3)} MB/s together`);
        say(`  raw Node HTTP loopback, 2 processes, 64 MiB: upload ${bl((b) => b.up)} MB/s, download ${bl((b) => b.down)} MB/s; load ${fmt(b0.load, 1)} / ${fmt(b1.load, 1)}`);
        const f = (g: (x: Floor) => number, d = 0) => `${fmt(g(b0.floor), d)} / ${fmt(g(b1.floor), d)}`;
        say(`  replicated-PUT floor (bench/lib/pipeline-floor.ts: plain Node coordinator + 2 replicas, MD5 + SHA-256, fdatasync, W=2), 64 MiB PUT:`);
        say(`    c=1 ${f((x) => x.c1)} MB/s at ${f((x) => x.cpu1, 1)} ms CPU/MiB; c=8 ${f((x) => x.c8)} MB/s at ${f((x) => x.cpu8, 1)} ms CPU/MiB`);
      }
      const names = NODES.map((n) => (n === 1 ? "1 node" : `${n} nodes (N=3, W=2, R=2)`));
      const ratio = NODES.length === 2 && NODES[0] === 1;
      say(`\n| | ${names.join(" | ")} |${ratio ? ` ${NODES[1]}-node / 1-node |` : ""}\n|---|${names.map(() => "---|").join("")}${ratio ? "---|" : ""}`);
      for (const [i, a] of results[0]!.entries()) {
        const cells = results.map((r) => `${fmt(r[i]!.value)} ${r[i]!.unit} (${r[i]!.extra})`);
        say(`| ${a.label} | ${cells.join(" | ")} |${ratio ? ` ${fmt(results[1]![i]!.value / a.value, 2)} |` : ""}`);
      }
    } finally {
      raw.stop();
      await rm(dir, { recursive: true, force: true });
    }
    if (failures.length) {
      say(`\nfailed requests: ${failures.length}; distinct errors:`);
      const seen = new Map<string, number>();
      for (const f of failures) { const k = f.replace(/\/bench\/\S+|127\.[\d.:]+/g, "…"); seen.set(k, (seen.get(k) ?? 0) + 1); }
      for (const [k, v] of seen) say(`  ${v} x ${k}`);
    }
  } finally {
    load.stop();
    agent.destroy();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
