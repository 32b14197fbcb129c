/**
 * Scheduler benchmark (`npm run bench -- scheduler`, or node dist/bench/scheduler.js):
 *  1. Leader failover with real agents (--dev, loopback, test driver): 3 and
 *     then 5 agents; N times SIGKILL the leader and time until a
 *     VmService.CreateVm through a surviving node succeeds (a fresh request
 *     id per create, retried on UNAVAILABLE every 50 ms); the killed agent is
 *     restarted and followed before the next kill. Scheduler timers: the
 *     defaults (3 and 5 agents; --timers lan), the local preset's (--timers local) and, with --timers lan,fast,
 *     etcd's fast setting (3 agents).
 *  2. Baseline: the same with etcd (Debian's etcd-server 3.4, 3 members on
 *     loopback), default timers (100/1000 ms) and 50/300 ms: SIGKILL the
 *     leader, time until a put through a surviving member succeeds. Needs
 *     /usr/bin/etcd (apt-get install etcd-server); skipped with a note without it.
 *  3. Leader overhead: 200 tiny VMs (1 vCPU, 16 MiB, kernel image, no disk,
 *     no network) on the test driver: one agent (the baseline), 5 agents
 *     through the leader (sent round-robin, unpinned), and 5 agents pinned
 *     (CreateVmRequest.node = the agent the create is sent to).
 *
 *   node dist/bench/scheduler.js [--kills N] [--only failover|etcd|overhead] [--timers lan,local,fast] [--vms N]
 */
import { randomBytes, randomUUID } from "node:crypto";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { SchedulerService, VmService } from "../proto/index.js";
import { ThocError } from "../errors/index.js";
import { createClient, credentials, type Client } from "../rpc/index.js";
import { startCluster, waitFor, type AgentProcess, type Cluster } from "../test/harness.js";
import { EtcdCluster, etcdMissing } from "./lib/etcd.js";

const arg = (name: string) => { const i = process.argv.indexOf(name); return i >= 0 ? process.argv[i + 1] : undefined; };
const KILLS = Number(arg("--kills") ?? 10);
const VMS = Number(arg("--vms") ?? 200);
const ONLY = arg("--only");
/** lan: the defaults, 3 and 5 agents; local: the --dev preset's (etcd's) 1000/100/500 ms, 3 and 5 agents; fast: 300/50/250 ms, 3 agents (beside etcd's 50/300). */
const TIMERS = arg("--timers") ?? "lan";

/** Nearest-rank percentile. */
function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
const fmt = (ms: number) => `${Math.round(ms)}`;
const summary = (xs: number[]) => `p50 ${fmt(pct(xs, 50))} / p99 ${fmt(pct(xs, 99))} / max ${fmt(Math.max(...xs))} ms`;

type VmClient = Client<typeof VmService.method>;
type SchedClient = Client<typeof SchedulerService.method>;

/**
 * Scheduler timers as the agents get them: the lan defaults (config/schema.ts; set explicitly, since the
 * harness's agents run the local preset), the local preset's, or etcd's fast setting for comparison.
 */
const TIMER_ENV: Record<string, Record<string, string>> = {
  lan: { THOC_SCHEDULER_ELECTION_TIMEOUT: "2000", THOC_SCHEDULER_HEARTBEAT_INTERVAL: "400", THOC_SCHEDULER_LEASE_DURATION: "800" },
  local: {},
  fast: { THOC_SCHEDULER_ELECTION_TIMEOUT: "300", THOC_SCHEDULER_HEARTBEAT_INTERVAL: "50", THOC_SCHEDULER_LEASE_DURATION: "250" },
};
const TIMER_TEXT: Record<string, string> = { lan: "election 2000, heartbeat 400, lease 800 ms: the defaults", local: "election 1000, heartbeat 100, lease 500 ms: the local preset", fast: "election 300, heartbeat 50, lease 250 ms" };

interface Lab { c: Cluster; vm: Map<string, VmClient>; sched: Map<string, SchedClient>; close(): Promise<void> }

async function lab(n: number, env: Record<string, string> = {}): Promise<Lab> {
  const c = await startCluster(n, { dev: true, args: ["--log-level", "warn"], env: { THOC_LIMITS_LOAD_FACTOR: "16", ...env } });
  const vm = new Map<string, VmClient>(), sched = new Map<string, SchedClient>();
  for (const a of c.agents) {
    vm.set(a.name, createClient(VmService, a.grpcAddress, { credentials: credentials.createInsecure(), defaultTimeoutMs: 60_000 }));
    sched.set(a.name, createClient(SchedulerService, a.grpcAddress, { credentials: credentials.createInsecure(), defaultTimeoutMs: 5_000 }));
  }
  await writeFile(path.join(c.root, "kernel"), randomBytes(4096));
  await agreed(c.agents, sched, Math.min(3, n));
  const r = await c.agents[0]!.cli(["image", "import", "tiny", "--kernel", path.join(c.root, "kernel"), "--cmdline", "console=ttyS0"], 60_000);
  if (r.code !== 0) throw new Error(`image import: ${r.stderr}`);
  return { c, vm, sched, async close() { for (const x of [...vm.values(), ...sched.values()]) x.close(); await c.stop(); } };
}

/** Every agent names one leader, which has `voters` voters that all answer; returns the leader's name. */
async function agreed(agents: AgentProcess[], sched: Map<string, SchedClient>, voters: number): Promise<string> {
  return waitFor("every agent follows one leader whose voters all answer", async () => {
    const docs = await Promise.all(agents.map((a) => sched.get(a.name)!.getLeader({}, { timeoutMs: 2000 })));
    const lead = docs.find((d) => d.role === "leader");
    if (!lead?.leader || docs.some((d) => d.leader?.id !== lead.leader!.id)) return undefined;
    if (lead.voters.length !== voters || lead.voters.some((v) => v.state === "unreachable" || v.state === "unknown")) return undefined;
    return lead.leader.name;
  }, 60_000, 100);
}

const tiny = (name: string) => ({ name, image: "tiny", vcpus: 1, ramMb: 16, diskGb: 0, network: { mode: "none" } });

/**
 * Resolves at the first attempt that succeeds, starting a new attempt every
 * 50 ms without waiting for the ones in flight: a write sent while there is
 * no leader may wait (etcd drops the proposal and answers at its request
 * timeout; a thoc agent retries the forward itself), and waiting for it would
 * measure the timeout, not the failover.
 */
async function firstSuccess(attempt: () => Promise<unknown>, limitMs = 60_000): Promise<void> {
  const t0 = Date.now();
  let done = false;
  const errors = new Map<string, number>();
  await new Promise<void>((resolve, reject) => {
    const go = () => {
      if (done) return;
      if (Date.now() - t0 > limitMs) { done = true; reject(new Error(`no write succeeded within ${limitMs} ms: ${JSON.stringify([...errors])}`)); return; }
      attempt().then(() => { if (!done) { done = true; resolve(); } }, (err: unknown) => {
        const m = ThocError.from(err).message.slice(0, 80);
        errors.set(m, (errors.get(m) ?? 0) + 1);
      });
      setTimeout(go, 50);
    };
    go();
  });
}

async function thocFailover(n: number, timers: string): Promise<number[]> {
  const env = TIMER_ENV[timers];
  if (!env) throw new Error(`--timers ${timers}: lan, local or fast`);
  const l = await lab(n, env);
  const out: number[] = [];
  try {
    for (let k = 0; k < KILLS; k++) {
      const leaderName = await agreed(l.c.agents, l.sched, Math.min(3, n));
      const leader = l.c.agents.find((a) => a.name === leaderName)!;
      const survivors = l.c.agents.filter((a) => a !== leader);
      const via = survivors[k % survivors.length]!;
      const t0 = performance.now();
      const killed = leader.kill("SIGKILL");
      // One request id for every attempt: they are the same create, so one VM however many answer.
      const req = { spec: tiny(`fo-${n}-${k}`), requestId: randomUUID() };
      await firstSuccess(() => l.vm.get(via.name)!.createVm(req, { timeoutMs: 30_000 }));
      out.push(performance.now() - t0);
      await killed;
      process.stdout.write(`    ${n} agents (${timers}), kill ${k + 1}: leader ${leaderName} killed, create through ${via.name} ok after ${fmt(out.at(-1)!)} ms\n`);
      await leader.start();
      await agreed(l.c.agents, l.sched, Math.min(3, n));
    }
  } finally { await l.close(); }
  return out;
}

async function etcdFailover(hb: number, et: number): Promise<number[]> {
  const e = new EtcdCluster(hb, et);
  const out: number[] = [];
  try {
    await e.start();
    for (let k = 0; k < KILLS; k++) {
      const leader = await e.leader();
      const via = e.members.filter((m) => m !== leader)[k % 2]!;
      const t0 = performance.now();
      const killed = e.kill(leader);
      await firstSuccess(() => e.put(via, `bench/${k}`, "x", 10_000));
      out.push(performance.now() - t0);
      await killed;
      process.stdout.write(`    etcd ${hb}/${et}, kill ${k + 1}: leader ${leader.name} killed, put through ${via.name} ok after ${fmt(out.at(-1)!)} ms\n`);
      await e.restart(leader);
      await e.leader();
    }
  } finally { await e.stop(); }
  return out;
}

interface Run { perSec: number; p50: number; p99: number; retries: number; placeMs?: number }

/** The leader's own time in placement (thoc_scheduler_placement_seconds, outcome ok): seconds and count so far. */
async function placement(a: AgentProcess): Promise<{ sum: number; count: number }> {
  const text = await (await fetch(`${a.httpUrl}/metrics`)).text();
  const v = (suffix: string) => Number(/ ([0-9.e+-]+)$/.exec(text.split("\n").find((l) => l.startsWith(`thoc_scheduler_placement_seconds_${suffix}{`) && l.includes('outcome="ok"')) ?? " 0")?.[1] ?? 0);
  return { sum: v("sum"), count: v("count") };
}

/**
 * `VMS` creates at concurrency `conc`, in batches of 25 (2 cores × loadFactor
 * 16 = 32 vCPUs a node), each batch deleted (untimed) before the next.
 * target(i) gives the agent a create is sent to and the node it is pinned to ("" = leader's choice).
 */
async function creates(l: Lab, conc: number, target: (i: number) => { via: string; node: string }, tag: string): Promise<Run> {
  const lat: number[] = [];
  let busy = 0, retries = 0;
  const leaderName = await agreed(l.c.agents, l.sched, Math.min(3, l.c.agents.length));
  const lead = l.c.agents.find((a) => a.name === leaderName)!;
  const p0 = await placement(lead);
  for (let b = 0; b < VMS; b += 25) {
    const ids = Array.from({ length: Math.min(25, VMS - b) }, (_, j) => b + j);
    const made: { name: string; node: string }[] = [];
    const t0 = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: conc }, async () => {
      while (next < ids.length) {
        const i = ids[next++]!;
        const { via, node } = target(i);
        const s = performance.now();
        const req = { spec: tiny(`${tag}-${i}`), node, requestId: randomUUID() };
        let vm;
        // As the CLI does: UNAVAILABLE (a leader whose lease lapsed a moment on a busy machine) is retried, same request id.
        for (;;) {
          try { ({ vm } = await l.vm.get(via)!.createVm(req)); break; } catch (err) {
            if (ThocError.from(err).code !== "unavailable") throw err;
            retries++;
            await new Promise((r) => setTimeout(r, 50));
          }
        }
        lat.push(performance.now() - s);
        made.push({ name: vm!.name, node: vm!.node });
      }
    }));
    busy += performance.now() - t0;
    await Promise.all(made.map((v) => l.vm.get(v.node)!.deleteVm({ name: v.name })));
  }
  const p1 = await placement(lead);
  // Only when one leader placed them all (a leader change midway splits the histogram).
  const placeMs = p1.count - p0.count === VMS ? ((p1.sum - p0.sum) / VMS) * 1000 : undefined;
  return { perSec: VMS / (busy / 1000), p50: pct(lat, 50), p99: pct(lat, 99), retries, ...(placeMs !== undefined ? { placeMs } : {}) };
}

async function overhead(): Promise<void> {
  const rows: [string, string, Run, Run][] = [];
  const both = async (l: Lab, target: (i: number) => { via: string; node: string }, tag: string) =>
    [await creates(l, 1, target, `${tag}1`), await creates(l, 8, target, `${tag}8`)] as const;
  let l = await lab(1, TIMER_ENV.lan);
  try {
    const [a, b] = await both(l, () => ({ via: "n1", node: "" }), "one");
    rows.push(["1 agent (baseline)", "the agent is the leader: placement and the create in one process", a, b]);
  } finally { await l.close(); }
  l = await lab(5, TIMER_ENV.lan);
  try {
    const names = l.c.agents.map((a) => a.name);
    const leader = await agreed(l.c.agents, l.sched, 3);
    const [a, b] = await both(l, (i) => ({ via: names[i % 5]!, node: "" }), "rr");
    rows.push(["5 agents, through the leader", `round-robin to all agents, unpinned: 4 of 5 forwarded to the leader (${leader}), placed, committed on the chosen node`, a, b]);
    const [c, d] = await both(l, (i) => ({ via: names[i % 5]!, node: names[i % 5]! }), "pin");
    rows.push(["5 agents, pinned", "sent to the node it is pinned to: forwarded to the leader and committed back on that node (2 hops; none for the 1 in 5 sent to the leader itself)", c, d]);
  } finally { await l.close(); }
  const base = rows[0]!;
  console.log(`\n3. Leader overhead: ${VMS} creates (test driver, 1 vCPU / 16 MiB, kernel image, no disk, network none; batches of 25, deleted untimed)`);
  console.log("| mode | c=1 creates/s | c=1 p50 / p99 | c=1 leader's placement, mean | c=8 creates/s | c=8 p50 / p99 | ratio to 1 agent (c=1 / c=8 creates/s) | UNAVAILABLE retried |");
  console.log("|---|---|---|---|---|---|---|---|");
  const place = (r: Run) => (r.placeMs === undefined ? "n/a (leader changed)" : `${fmt(r.placeMs)} ms`);
  for (const [name, , a, b] of rows) {
    console.log(`| ${name} | ${a.perSec.toFixed(1)} | ${fmt(a.p50)} / ${fmt(a.p99)} ms | ${place(a)} | ${b.perSec.toFixed(1)} | ${fmt(b.p50)} / ${fmt(b.p99)} ms | ${(a.perSec / base[2].perSec).toFixed(2)}× / ${(b.perSec / base[3].perSec).toFixed(2)}× | ${a.retries + b.retries} |`);
  }
  console.log("  (the leader's placement: thoc_scheduler_placement_seconds on the leader: the name check, ranking and the fenced create on the chosen node, publish included)");
  for (const [name, what] of rows) console.log(`  ${name}: ${what}`);
}

async function failover(): Promise<void> {
  const res: [string, number[]][] = [];
  if (ONLY !== "etcd") {
    const configs: [number, string][] = TIMERS.split(",").flatMap((t): [number, string][] => (t === "fast" ? [[3, t]] : [[3, t], [5, t]]));
    for (const [n, timers] of configs) {
      res.push([`thoc, ${n} agents (${TIMER_TEXT[timers]})`, await thocFailover(n, timers)]);
    }
  }
  if (ONLY !== "failover") {
    const missing = etcdMissing();
    if (missing) console.log(`  etcd baseline skipped: ${missing}`);
    else for (const [hb, et] of [[100, 1000], [50, 300]] as const) res.push([`etcd 3.4, 3 members (heartbeat ${hb}, election ${et} ms)`, await etcdFailover(hb, et)]);
  }
  console.log(`\n1-2. Leader SIGKILLed -> first successful write through a survivor (a new attempt every 50 ms, attempts in flight kept), ${KILLS} kills each`);
  console.log("| system | p50 | p99 | max | samples (ms) |");
  console.log("|---|---|---|---|---|");
  for (const [name, xs] of res) console.log(`| ${name} | ${fmt(pct(xs, 50))} ms | ${fmt(pct(xs, 99))} ms | ${fmt(Math.max(...xs))} ms | ${xs.map(fmt).join(" ")} |`);
  const etcdDefault = res.find(([n]) => n.includes("1000 ms"));
  const etcdFast = res.find(([n]) => n.includes("300 ms"));
  for (const [name, xs] of res.filter(([n]) => n.startsWith("thoc"))) {
    const r = (e: [string, number[]] | undefined) => (e ? `${(pct(xs, 50) / pct(e[1], 50)).toFixed(2)}× etcd ${e[0].includes("1000") ? "100/1000" : "50/300"}` : "");
    console.log(`  ${name}: ${summary(xs)}; p50 ratio ${[r(etcdDefault), r(etcdFast)].filter(Boolean).join(", ") || "n/a (no etcd)"}`);
  }
}

console.log(`scheduler benchmark: ${KILLS} kills, ${VMS} VMs, ${new Date().toISOString()}`);
if (!ONLY || ONLY === "failover" || ONLY === "etcd") await failover();
if (!ONLY || ONLY === "overhead") await overhead();
