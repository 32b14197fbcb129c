/**
 * The replicated object store's repair (issue 15, "Repair that scales"):
 *
 *  1. Idle anti-entropy: 4 agents (THOC_PRESET=local: anti-entropy every
 *     5 s), BENCH_IDLE_OBJECTS small objects (default 10,000 x 1 KiB) written
 *     through S3, waited on until every one has 3 replicas, then the agents'
 *     CPU (utime + stime from /proc/<pid>/stat) over BENCH_IDLE_SECONDS
 *     (default 60). The same again on a second cluster whose anti-entropy runs
 *     every hour (so never in the window): the difference is what
 *     anti-entropy costs; gossip, ring and table sync are in both.
 *  2. Re-replication: 4 agents, BENCH_REPAIR_OBJECTS x BENCH_REPAIR_MIB MiB
 *     (default 16 x 64 MiB = 1 GiB) written, wait for 3 replicas of
 *     everything (sum of thoc_objectstore_replica_bytes), SIGKILL one node,
 *     `node remove` it through another, and time until the 3 left hold 3
 *     copies again (each holds everything: N=3 on 3 nodes). Copies made are
 *     counted (thoc_objectstore_anti_entropy_repairs_total on the survivors)
 *     against the copies missing (the records the lost node held); the
 *     survivors' CPU during the repair is shown to tell what bounds it; the
 *     objects are read back byte-exact through the survivors.
 *     objectstore.repairBytesPerSecond applies (THOC_OBJECTSTORE_REPAIR_BYTES_PER_SECOND
 *     in this process's env reaches the agents).
 *
 * Run: npm run build && node dist/bench/objectstore-repair.js
 * Knobs: BENCH_ONLY=idle|rereplication, BENCH_IDLE_OBJECTS, BENCH_IDLE_SECONDS,
 * BENCH_IDLE_BASELINE=0 (skip the hourly cluster), BENCH_REPAIR_OBJECTS,
 * BENCH_REPAIR_MIB, BENCH_REPAIR_TIMEOUT_S (default 900).
 */
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import { availableParallelism, loadavg } from "node:os";
import { cpuSeconds, s3Requester } from "./common.js";
import { startCluster, sleep, waitFor, type AgentProcess, type Cluster } from "../test/harness.js";

const ACCESS = "THOCBENCHREPAIR00001";
const SECRET = "bench-repair-secret-0123456789abcdefghij";
const MiB = 1 << 20;
const IDLE_OBJECTS = Number(process.env.BENCH_IDLE_OBJECTS ?? 10_000);
const IDLE_MS = Number(process.env.BENCH_IDLE_SECONDS ?? 60) * 1000;
const REPAIR_OBJECTS = Number(process.env.BENCH_REPAIR_OBJECTS ?? 16);
const REPAIR_SIZE = Number(process.env.BENCH_REPAIR_MIB ?? 64) * MiB;
const REPAIR_TIMEOUT_MS = Number(process.env.BENCH_REPAIR_TIMEOUT_S ?? 900) * 1000;
const REPAIR_BPS = Number(process.env.THOC_OBJECTSTORE_REPAIR_BYTES_PER_SECOND ?? 50 * MiB);
const say = (s: string) => console.log(s);
const fmt = (n: number, d = 0) => n.toFixed(d);
const mb = (bytes: number, s: number) => bytes / s / 1e6;
const sum = (xs: number[]) => xs.reduce((x, y) => x + y, 0);
const gib = (b: number) => fmt(b / 2 ** 30, 3);

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const request = s3Requester(ACCESS, SECRET, "us-east-1", agent);

/** Runs `total` jobs with `conc` in flight; each is retried twice (a request racing a peer's start-up). */
async function pool(total: number, conc: number, job: (i: number, attempt: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: Math.min(conc, total) }, async () => {
    while (next < total) {
      const i = next++;
      for (let attempt = 1; ; attempt++) {
        try {
          await job(i, attempt);
          break;
        } catch (err) {
          if (attempt === 3) throw err;
        }
      }
    }
  }));
  return (performance.now() - t0) / 1000;
}

async function metric(a: AgentProcess, name: string): Promise<number | undefined> {
  const text = await (await fetch(`${a.httpUrl}/metrics`, { signal: AbortSignal.timeout(20_000) })).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
}
const metrics = async (as: AgentProcess[], name: string) => (await Promise.all(as.map((a) => metric(a, name)))).map((v) => v ?? NaN);
const cpuOf = (as: AgentProcess[]) => Promise.all(as.map((a) => cpuSeconds(a.proc!.pid!)));

interface RingJson { nodes: { name: string; state: string }[] }
async function waitRingUp(as: AgentProcess[]): Promise<void> {
  const want = as.map((a) => a.name).sort().join();
  for (const a of as) {
    await waitFor(`${a.name}'s ring shows everyone up`, async () => {
      const r = await a.cli(["ring", "--json"]);
      if (r.code !== 0) return false;
      return (JSON.parse(r.stdout) as RingJson).nodes.filter((n) => n.state === "up").map((n) => n.name).sort().join() === want;
    }, 60_000, 250);
  }
}

async function cluster(env: Record<string, string> = {}): Promise<Cluster> {
  const c = await startCluster(4, { env: { THOC_S3_ACCESS_KEY: ACCESS, THOC_S3_SECRET_KEY: SECRET, ...env }, args: ["--log-level", "warn"] });
  await waitRingUp(c.agents);
  return c;
}

// ---- 1. idle anti-entropy ----

interface Idle { cores: number[]; rounds: number; repairs: number; write: number }

async function idleCluster(aeInterval: string): Promise<Idle> {
  const c = await cluster({ THOC_OBJECTSTORE_ANTI_ENTROPY_INTERVAL: aeInterval });
  try {
    const bases = c.agents.map((a) => new URL(a.s3Url));
    await request(bases[0]!, "PUT", "/idle");
    const body = randomBytes(1024);
    const write = await pool(IDLE_OBJECTS, 32, (i, attempt) => request(bases[(i + attempt) % 4]!, "PUT", `/idle/o${i}`, body));
    await waitFor("3 replicas of every object", async () => sum(await metrics(c.agents, "thoc_objectstore_replicas")) >= 3 * IDLE_OBJECTS, 300_000, 1000);
    // Let the first rounds after the writes (which scan and cache) pass.
    await sleep(12_000);
    const rounds0 = sum(await metrics(c.agents, "thoc_objectstore_anti_entropy_rounds_total"));
    const repairs0 = sum(await metrics(c.agents, "thoc_objectstore_anti_entropy_repairs_total"));
    const c0 = await cpuOf(c.agents);
    await sleep(IDLE_MS);
    const c1 = await cpuOf(c.agents);
    const rounds = sum(await metrics(c.agents, "thoc_objectstore_anti_entropy_rounds_total")) - rounds0;
    const repairs = sum(await metrics(c.agents, "thoc_objectstore_anti_entropy_repairs_total")) - repairs0;
    return { cores: c1.map((x, i) => (x - c0[i]!) / (IDLE_MS / 1000)), rounds, repairs, write };
  } finally {
    await c.stop();
  }
}

async function idle(): Promise<void> {
  const pct = (x: number) => `${fmt(100 * x, 2)}%`;
  const ae = await idleCluster("5s");
  say(`\nidle, anti-entropy every 5 s: ${IDLE_OBJECTS} x 1 KiB written in ${fmt(ae.write, 1)} s; over ${IDLE_MS / 1000} s the agents used ${ae.cores.map(pct).join(" / ")} of a core ` +
    `(mean ${pct(sum(ae.cores) / 4)} per node); ${ae.rounds} anti-entropy rounds with a peer, ${ae.repairs} repairs`);
  if (process.env.BENCH_IDLE_BASELINE === "0") return;
  const base = await idleCluster("3600s");
  say(`idle, anti-entropy every hour (baseline: gossip, ring and table sync): ${base.cores.map(pct).join(" / ")} of a core (mean ${pct(sum(base.cores) / 4)} per node); ${base.rounds} rounds`);
  const diff = (sum(ae.cores) - sum(base.cores)) / 4;
  say(`IDLE ANTI-ENTROPY: ${pct(diff)} of one core per node (${fmt(ae.rounds / (IDLE_MS / 1000), 1)} peer rounds per second in the cluster; target < 2%)`);
}

// ---- 2. re-replication after a node loss ----

async function rereplication(): Promise<void> {
  const c = await cluster();
  const [n1, , , victim] = c.agents as [AgentProcess, AgentProcess, AgentProcess, AgentProcess];
  const rest = c.agents.filter((a) => a !== victim);
  const total = REPAIR_OBJECTS * REPAIR_SIZE;
  const bytesOf = (as: AgentProcess[]) => metrics(as, "thoc_objectstore_replica_bytes");
  try {
    const bases = c.agents.map((a) => new URL(a.s3Url));
    await request(bases[0]!, "PUT", "/rerepl");
    const body = randomBytes(REPAIR_SIZE);
    const sums: string[] = [];
    const writeS = await pool(REPAIR_OBJECTS, 4, (i, attempt) => {
      const b = Buffer.from(body);
      b.writeUInt32BE(i, 0);
      sums[i] = createHash("sha256").update(b).digest("hex");
      return request(bases[(i + attempt - 1) % 4]!, "PUT", `/rerepl/o${i}`, b);
    });
    const t3 = performance.now();
    await waitFor("3 replicas of everything", async () => sum(await bytesOf(c.agents)) >= 3 * total, 300_000, 500);
    const per = await bytesOf(c.agents);
    say(`\nre-replication: wrote ${REPAIR_OBJECTS} x ${REPAIR_SIZE / MiB} MiB (${gib(total)} GiB) in ${fmt(writeS, 1)} s (${fmt(mb(total, writeS))} MB/s, c=4); ` +
      `3 copies ${fmt((performance.now() - t3) / 1000, 1)} s after the last ack; replica GiB per node ${per.map(gib).join(" / ")}`);
    const lost = per[3]!;
    const missing = (await metric(victim, "thoc_objectstore_replicas")) ?? NaN;
    const copies0 = sum(await metrics(rest, "thoc_objectstore_anti_entropy_repairs_total"));
    const dup0 = sum(await metrics(rest, "thoc_objectstore_repair_duplicates_total"));

    await victim.kill("SIGKILL");
    const cpu0 = await cpuOf(rest);
    const tRm = performance.now();
    const r = await n1.cli(["node", "remove", victim.name, "--json"]);
    if (r.code !== 0) throw new Error(`node remove ${victim.name}: ${r.stderr}`);
    say(`SIGKILL ${victim.name} (held ${gib(lost)} GiB, ${missing} replicas); \`node remove\` through ${n1.name} (${fmt(performance.now() - tRm)} ms); repairBytesPerSecond ${fmt(REPAIR_BPS / MiB)} MiB/s per node`);
    const series: string[] = [];
    let done = 0;
    let last: number[] = [];
    let firstMove = 0;
    let started = 0;
    while (performance.now() - tRm < REPAIR_TIMEOUT_MS) {
      last = await bytesOf(rest);
      const t = (performance.now() - tRm) / 1000;
      series.push(`${fmt(t, 1)}s ${last.map(gib).join("/")}`);
      if (!firstMove && sum(last) > sum(per) - lost) firstMove = t;
      if (!started && sum(await metrics(rest, "thoc_objectstore_repairs_in_flight")) > 0) started = t;
      if (last.every((b) => b >= total)) { done = t; break; }
      await sleep(250);
    }
    const cpu1 = await cpuOf(rest);
    const copies = sum(await metrics(rest, "thoc_objectstore_anti_entropy_repairs_total")) - copies0;
    const dups = sum(await metrics(rest, "thoc_objectstore_repair_duplicates_total")) - dup0;
    say(`survivors' replica GiB: ${series.filter((_, i) => i % 8 === 0 || i === series.length - 1).join(", ")}`);
    if (done) {
      const moved = 3 * total - (sum(per) - lost);
      const cores = (sum(cpu1) - sum(cpu0)) / done;
      say(`RE-REPLICATED: 3 copies of every object ${fmt(done, 1)} s after \`node remove\` (copies under way by ${fmt(started, 2)} s, first one committed by ${fmt(firstMove, 2)} s); ${gib(moved)} GiB copied → ${fmt(mb(moved, done))} MB/s effective ` +
        `(limit ${fmt(REPAIR_BPS / MiB)} MiB/s per node x 3); copies made ${copies} for ${missing} missing, ${Number.isNaN(dups) ? "n/a" : dups} transferred for nothing; ` +
        `survivors' CPU ${fmt(cores, 2)} cores (${fmt((1000 * (sum(cpu1) - sum(cpu0))) / (moved / MiB), 1)} ms per MiB copied) on a ${availableParallelism()}-core machine`);
    } else {
      say(`NOT CONVERGED after ${REPAIR_TIMEOUT_MS / 1000} s: replica bytes ${last.join(" / ")} (want ${total} each); copies ${copies}; series: ${series.join(", ")}`);
    }
    let ok = 0;
    for (let i = 0; i < REPAIR_OBJECTS; i++) {
      const via = rest[i % 3]!;
      const got = await request(new URL(via.s3Url), "GET", `/rerepl/o${i}`, undefined, true);
      if (got.sha256 === sums[i] && got.bytes === REPAIR_SIZE) ok++;
      else say(`  MISMATCH o${i} through ${via.name}: ${got.bytes} bytes, sha256 ${got.sha256}`);
    }
    say(`read back byte-exact through the survivors: ${ok}/${REPAIR_OBJECTS}`);
  } finally {
    await c.stop();
  }
}

async function main(): Promise<void> {
  const only = process.env.BENCH_ONLY;
  say(`machine: ${availableParallelism()} cores, Node ${process.version}; load average at start ${loadavg().map((x) => fmt(x, 2)).join(" ")}`);
  say("every node runs on this one machine: one disk, the same cores, loopback between nodes");
  try {
    if (only !== "rereplication") await idle();
    if (only !== "idle") await rereplication();
    say(`load average at the end ${loadavg().map((x) => fmt(x, 2)).join(" ")}`);
  } finally {
    agent.destroy();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
