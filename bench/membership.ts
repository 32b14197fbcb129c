/**
 * Membership benchmark: simulated clusters of 50 and 200 nodes with lan
 * timers at 0/5/10% uniform datagram loss (fake clock, in-memory network,
 * real protocol and sealing code). Reports failure-detection times, false
 * dead verdicts, re-merge time after a partition heals, and gossip bytes per
 * node per second; plus a physical baseline measured in the same run (UDP
 * loopback round trip, AES-256-GCM seal+open per datagram).
 *
 *   node dist/bench/membership.js [--quick] [--real | --real-only]
 *   node dist/bench/membership.js --vs-serf [--trials 8] [--idle 30] [--hog 0] [--only serf|lan|local]
 * (--real adds 5 real agent processes with lan timers on loopback.
 * --vs-serf prints issue 19's side-by-side table against 5 HashiCorp serf
 * agents (bench/lib/vs-serf.ts); it needs Debian's serf package,
 * `apt-get install -y serf`, which CI does not install: the benchmark is not
 * part of CI.)
 */
import dgram from "node:dgram";
import os from "node:os";
import { DEV_CLUSTER_KEY } from "../config/index.js";
import { Keyring, Sim } from "../membership/index.js";
import { ClusterService } from "../proto/index.js";
import { createClient } from "../rpc/index.js";
import { startCluster, waitFor, type AgentProcess } from "../test/harness.js";
import { vsSerf } from "./lib/vs-serf.js";

const quick = process.argv.includes("--quick");
const realOnly = process.argv.includes("--real-only");
const real = realOnly || process.argv.includes("--real");

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}
const sec = (ms: number) => (ms / 1000).toFixed(2);

async function baseline(): Promise<{ rttUs: number; sealUs: number }> {
  const a = dgram.createSocket("udp4"), b = dgram.createSocket("udp4");
  await new Promise<void>((r) => a.bind(0, "127.0.0.1", () => r()));
  await new Promise<void>((r) => b.bind(0, "127.0.0.1", () => r()));
  b.on("message", (m, ri) => b.send(m, ri.port, ri.address));
  const rtts: number[] = [];
  const msg = Buffer.alloc(200);
  for (let i = 0; i < 2000; i++) {
    const t0 = process.hrtime.bigint();
    await new Promise<void>((r) => { a.once("message", () => r()); a.send(msg, b.address().port, "127.0.0.1"); });
    rtts.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  a.close(); b.close();
  const k = new Keyring([DEV_CLUSTER_KEY], "bench");
  const body = Buffer.alloc(300, 1);
  const n = 20_000;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) k.open("p", k.seal("p", "0123456789abcdef0123456789abcdef0123", i, body));
  return { rttUs: pct(rtts, 50), sealUs: Number(process.hrtime.bigint() - t0) / 1000 / n };
}

interface Row { n: number; loss: number; firstP50: number; firstP99: number; allP50: number; allP99: number; fp: number; bps: number; steadyS: number; trials: number }

async function detection(n: number, loss: number, trials: number, steadyMs: number, seed: number): Promise<Row> {
  const sim = new Sim({ n, seed, seeds: 3 });
  sim.start();
  await sim.until(() => sim.converged(), 300_000, 500);
  sim.net.loss = loss;
  const crashed = new Set<string>();
  let fp = 0;
  for (const x of sim.nodes) x.node.subscribe((e) => { if (e.type === "dead" && !crashed.has(e.member.id)) fp++; });
  // Steady state: false positives and bytes.
  await sim.run(60_000, 5000);
  const b0 = sim.net.bytes;
  await sim.run(steadyMs, 5000);
  const bps = (sim.net.bytes - b0) / n / (steadyMs / 1000);
  const first: number[] = [], all: number[] = [];
  for (let t = 0; t < trials; t++) {
    const victim = 5 + Math.floor((t * (n - 5)) / trials);
    const id = sim.nodes[victim]!.node.localId;
    crashed.add(id);
    const t0 = sim.clock.now();
    let firstAt = 0;
    const seen = new Set<string>();
    const unsub = sim.nodes.map((x) => x.node.subscribe((e) => {
      if (e.member.id !== id) return;
      if (!firstAt && (e.type === "suspect" || e.type === "dead")) firstAt = sim.clock.now() - t0;
      if (e.type === "dead" && !seen.has(x.name)) { seen.add(x.name); all.push(sim.clock.now() - t0); }
    }));
    await sim.crash(victim);
    await sim.until(() => sim.live().every((x) => x.node.member(id)?.state === "dead"), 300_000, 100);
    first.push(firstAt);
    unsub.forEach((u) => u());
    await sim.run(10_000, 5000);
  }
  return { n, loss, firstP50: pct(first, 50), firstP99: pct(first, 99), allP50: pct(all, 50), allP99: pct(all, 99), fp, bps, steadyS: steadyMs / 1000, trials };
}

async function remerge(n: number, seed: number): Promise<number> {
  const sim = new Sim({ n, seed, seeds: 3 });
  sim.start();
  await sim.until(() => sim.converged(), 300_000, 500);
  const cut = Math.floor(n * 0.6);
  const a = sim.nodes.slice(0, cut), b = sim.nodes.slice(cut);
  sim.net.partition([a.map((x) => x.addr), b.map((x) => x.addr)]);
  await sim.until(() => a.every((v) => b.every((t) => v.node.member(t.node.localId)?.state === "dead")), 600_000, 1000);
  await sim.run(30_000, 5000);
  sim.net.heal();
  return sim.until(() => sim.converged(), 600_000, 250);
}

async function outBytes(a: AgentProcess): Promise<number> {
  const text = await (await fetch(`${a.httpUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith('thoc_gossip_bytes_total{direction="out"}'));
  return Number(line?.split(" ").pop() ?? 0);
}

/** 5 real agents (lan timers) on loopback: SIGKILL detection and bytes per node per second. */
async function realAgents(trials: number): Promise<void> {
  const c = await startCluster(5, { env: { THOC_PRESET: "lan" } });
  const clients = c.agents.map((a) => createClient(ClusterService, a.clientAddress, { defaultTimeoutMs: 5000 }));
  const states = async (i: number) => new Map((await clients[i]!.listMembers({})).members.map((m) => [m.name, m.state]));
  try {
    await waitFor("5 alive", async () => { for (let i = 0; i < 5; i++) if ([...(await states(i)).values()].filter((s) => s === "alive").length !== 5) return false; return true; }, 60_000, 200);
    await new Promise((r) => setTimeout(r, 10_000));
    const b0 = await Promise.all(c.agents.map(outBytes));
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, 30_000));
    const b1 = await Promise.all(c.agents.map(outBytes));
    const bps = b1.reduce((a, b, i) => a + b - b0[i]!, 0) / 5 / ((Date.now() - t0) / 1000);
    const all: number[] = [];
    for (let t = 0; t < trials; t++) {
      const v = 1 + (t % 4);
      const name = c.agents[v]!.name;
      const start = Date.now();
      await c.agents[v]!.kill("SIGKILL");
      const others = [0, 1, 2, 3, 4].filter((i) => i !== v);
      const seen = new Set<number>();
      await waitFor("dead everywhere", async () => {
        for (const i of others) if (!seen.has(i) && (await states(i)).get(name) === "dead") { seen.add(i); all.push(Date.now() - start); }
        return seen.size === others.length;
      }, 60_000, 25);
      await c.agents[v]!.start();
      await waitFor("alive again", async () => { for (const i of [0, 1, 2, 3, 4]) if ((await states(i)).get(name) !== "alive") return false; return true; }, 60_000, 200);
    }
    console.log(`5 real agents (lan timers, loopback, sealed UDP/TCP): SIGKILL → dead at every other agent p50 ${sec(pct(all, 50))} s / p99 ${sec(pct(all, 99))} s over ${trials} kills; gossip out ${bps.toFixed(0)} bytes/node/s`);
  } finally {
    clients.forEach((x) => x.close());
    await c.stop();
  }
}

async function main(): Promise<void> {
  const wall0 = Date.now();
  console.log(`# membership benchmark ${new Date().toISOString()} — ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`);
  const base = await baseline();
  console.log(`baseline: UDP loopback round trip p50 ${base.rttUs.toFixed(0)} µs; AES-256-GCM seal+open of a 300-byte datagram ${base.sealUs.toFixed(1)} µs`);
  if (process.argv.includes("--vs-serf")) { await vsSerf(process.argv); return; }
  if (realOnly) { await realAgents(quick ? 2 : 8); return; }
  console.log("lan timers: probeInterval 1 s, probeTimeout 0.5 s, k=3, suspicionMult 4 (max x6), gossip 200 ms x3, push-pull 30 s (x2 at 50, x4 at 200 nodes)");
  console.log("| nodes | loss | first detection p50 / p99 (s) | dead at every member p50 / p99 (s) | false dead verdicts | gossip bytes/node/s |");
  console.log("|---|---|---|---|---|---|");
  const sizes: [number, number, number][] = quick ? [[50, 5, 60_000]] : [[50, 20, 300_000], [200, 8, 120_000]];
  for (const [n, trials, steady] of sizes) {
    for (const loss of [0, 0.05, 0.1]) {
      const r = await detection(n, loss, trials, steady, 100 + n + loss * 100);
      console.log(`| ${r.n} | ${(r.loss * 100).toFixed(0)}% | ${sec(r.firstP50)} / ${sec(r.firstP99)} | ${sec(r.allP50)} / ${sec(r.allP99)} | ${r.fp} (${r.steadyS + 60 + r.trials * 10} s simulated) | ${r.bps.toFixed(0)} |`);
    }
  }
  for (const n of quick ? [50] : [50, 200]) {
    const ms = await remerge(n, 7 + n);
    console.log(`re-merge after a 60/40 partition heals, ${n} nodes: ${sec(ms)} s (simulated)`);
  }
  if (real) await realAgents(quick ? 2 : 8);
  console.log(`wall time ${((Date.now() - wall0) / 1000).toFixed(0)} s`);
}

await main();
