/**
 * Idle footprint (issue 19): RSS and CPU of idle agents with an empty store.
 *
 *   node dist/bench/idle.js [--seconds 60] [--settle 10] [--only dev|lan] [--env K=V ...] [--cpu-prof DIR]
 *
 * `dev`: one `agent --dev` (the local preset, as `npm run dev` runs it);
 * `lan`: 5 agents with THOC_PRESET=lan on loopback (the cluster of issue 19's
 * table, without serf beside it). After the cluster has formed and start-up
 * work has settled, each agent's CPU (all threads, /proc/PID/stat) is read
 * over the window; RSS is read at its end. A bare `node` process measured over
 * the `--dev` window is the physical baseline.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile } from "node:fs/promises";
import os from "node:os";
import { cpuSeconds } from "./common.js";
import path from "node:path";
import { Cluster, loopbackBlock, sleep, waitFor, type ClusterOptions } from "../test/harness.js";

const opt = (name: string, def: number) => { const i = process.argv.indexOf(name); return i >= 0 ? Number(process.argv[i + 1]) : def; };
const only = process.argv.includes("--only") ? process.argv[process.argv.indexOf("--only") + 1] : undefined;
/** --env K=V (repeatable): extra environment for every agent, e.g. to see what one timer costs. */
/** --cpu-prof DIR: every agent writes a V8 CPU profile into DIR when it stops (NODE_OPTIONS refuses --cpu-prof). */
const profDir = process.argv.includes("--cpu-prof") ? process.argv[process.argv.indexOf("--cpu-prof") + 1] : undefined;
const wrap = profDir ? ["sh", "-c", `n=$0; exec "$n" --cpu-prof --cpu-prof-dir=${JSON.stringify(profDir)} "$@"`] : undefined;
const extraEnv = Object.fromEntries(process.argv.flatMap((a, i) => (a === "--env" ? [process.argv[i + 1]!.split(/=(.*)/s).slice(0, 2)] : [])));

async function status(pid: number): Promise<{ rss: number; anon: number; file: number }> {
  const s = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? 0) / 1024;
  return { rss: kb("VmRSS"), anon: kb("RssAnon"), file: kb("RssFile") };
}

/** Measures the agents of c (and, as the physical baseline, a bare `node` process, pid `bare`) over one window. */
async function idle(label: string, c: Cluster, seconds: number, settle: number, bare?: number): Promise<void> {
  const n = c.agents.length;
  await waitFor(`${label}: ${n} alive everywhere`, async () => {
    for (const a of c.agents) {
      const text = await (await fetch(`${a.httpUrl}/metrics`)).text();
      const alive = /^thoc_members\{state="alive"\} (\d+)/m.exec(text)?.[1];
      if (alive !== undefined && Number(alive) !== n) return false;
    }
    return true;
  }, 120_000, 500);
  await sleep(settle * 1000);
  const pids = [...c.agents.map((a) => a.proc!.pid!), ...(bare ? [bare] : [])];
  const c0 = await Promise.all(pids.map(cpuSeconds));
  const t0 = Date.now();
  await sleep(seconds * 1000);
  const c1 = await Promise.all(pids.map(cpuSeconds));
  const wall = (Date.now() - t0) / 1000;
  const st = await Promise.all(pids.map(status));
  const cpu = c1.map((x, i) => (100 * (x - c0[i]!)) / wall);
  const r = (xs: number[], d: number) => `${Math.min(...xs).toFixed(d)}-${Math.max(...xs).toFixed(d)}`;
  if (bare) {
    const b = st.pop()!, bc = cpu.pop()!;
    console.log(`| bare \`node\` (baseline, same window) | ${b.rss.toFixed(0)} MB | ${b.anon.toFixed(0)} MB | ${b.file.toFixed(0)} MB | ${bc.toFixed(2)} % | ${wall.toFixed(0)} s |`);
  }
  // Which agent leads the scheduler: its heartbeats make it the busiest of an idle cluster.
  const leads = await Promise.all(c.agents.map(async (a) => /^thoc_scheduler_is_leader 1$/m.test(await (await fetch(`${a.httpUrl}/metrics`)).text())));
  const each = cpu.map((x, i) => `${x.toFixed(2)}${leads[i] ? " (leader)" : ""}`).join(", ");
  const rssEach = st.map((s, i) => `${s.rss.toFixed(0)}${leads[i] ? " (leader)" : ""}`).join(", ");
  console.log(`| ${label} | ${r(st.map((s) => s.rss), 0)} MB | ${r(st.map((s) => s.anon), 0)} MB | ${r(st.map((s) => s.file), 0)} MB | ${r(cpu, 2)} % | ${wall.toFixed(0)} s |`);
  if (n > 1) console.log(`  CPU per agent: ${each} %; RSS per agent: ${rssEach} MB`);
}

/** Like the harness's startCluster, with a long readiness wait: on a loaded machine a start can take over 30 s. */
async function start(n: number, opts: ClusterOptions): Promise<Cluster> {
  const c = new Cluster(await mkdtemp(path.join(os.tmpdir(), "thoc-idle-")), loopbackBlock(), opts);
  for (let i = 0; i < n; i++) c.add();
  try { await Promise.all(c.agents.map((a) => a.start(180_000))); } catch (err) { await c.stop(); throw err; }
  return c;
}

/** Profiled agents must exit on their own to write their profile (the harness's stop kills them). */
async function stop(c: Cluster): Promise<void> {
  if (profDir) await Promise.all(c.agents.map((a) => a.kill("SIGTERM", 30_000)));
  await c.stop();
}

async function main(): Promise<void> {
  const seconds = opt("--seconds", 60), settle = opt("--settle", 10);
  console.log(`# idle footprint ${new Date().toISOString()} — ${os.cpus().length} cores, Node ${process.version}, load ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`);
  console.log("| agents | RSS | anonymous | file-backed | CPU of one core | window |");
  console.log("|---|---|---|---|---|---|");
  if (only === undefined || only === "dev") {
    const c = await start(1, { dev: true, env: { THOC_PRESET: "", ...extraEnv }, wrap });
    const bare = spawn(process.execPath, ["-e", "setInterval(() => {}, 1e9)"], { stdio: "ignore" });
    try { await idle("1 × `--dev`", c, seconds, settle, bare.pid); } finally { bare.kill(); await stop(c); }
  }
  if (only === undefined || only === "lan") {
    const c = await start(5, { dev: true, env: { THOC_PRESET: "lan", ...extraEnv }, wrap });
    try { await idle("5 × lan preset", c, seconds, settle); } finally { await stop(c); }
  }
  console.log(`load after: ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`);
}

await main();
