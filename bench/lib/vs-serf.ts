/**
 * `node dist/bench/membership.js --vs-serf [--trials N] [--idle S] [--hog N] [--only serf|lan|local]`:
 * issue 19's table from one run. A 5-agent serf cluster (lan profile) runs
 * for the whole run beside first a 5-agent thoc cluster with the lan preset,
 * then one with the local preset (what `--dev` runs), all on loopback. Per
 * system: idle RSS and CPU and the suspicion episodes over an idle window
 * (optionally under N busy-loop processes), then N trials of SIGKILL -> dead
 * everywhere -> restart -> alive everywhere, and graceful stop -> left
 * everywhere. Times come from each agent's own log: thoc's pino `time`
 * field, serf's lines stamped on arrival (its own stamps are whole seconds).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import { cpuSeconds } from "../common.js";
import { loopbackBlock, sleep, startCluster, type Cluster } from "../../test/harness.js";
import { SerfCluster, serfMissing, type SeenEvent } from "./serf.js";

interface Side {
  label: string;
  names: string[];
  events(): SeenEvent[];
  crash(i: number): Promise<void>;
  leave(i: number): Promise<void>;
  spawn(i: number): Promise<void>;
  pids(): number[];
}

interface Row { label: string; first: number[]; dead: number[]; left: number[]; restart: number[]; rssMb: number[]; cpuPct: number[]; suspicions: number; idleS: number }

const THOC_EVENT = /^member (suspect|dead|left|join|alive)$/;

function thocSide(label: string, c: Cluster): Side {
  const parsed = c.agents.map(() => ({ offset: 0, events: [] as SeenEvent[] }));
  return {
    label,
    names: c.agents.map((a) => a.name),
    events() {
      c.agents.forEach((a, i) => {
        const p = parsed[i]!;
        if (a.output.length < p.offset) p.offset = 0; // the harness trimmed its buffer
        const end = a.output.lastIndexOf("\n") + 1;
        for (const line of a.output.slice(p.offset, end).split("\n")) {
          if (!line.startsWith("{") || !line.includes("\"member ")) continue;
          try {
            const l = JSON.parse(line) as { msg?: string; member?: string; time?: string; incarnation?: number };
            const m = THOC_EVENT.exec(l.msg ?? "");
            if (!m || !l.member || !l.time) continue;
            const type = m[1] === "join" ? "alive" : (m[1] as SeenEvent["type"]);
            p.events.push({ t: Date.parse(l.time), observer: a.name, member: l.member, type, inc: l.incarnation });
          } catch { /* a partial line */ }
        }
        p.offset = Math.max(p.offset, end);
      });
      return parsed.flatMap((p) => p.events);
    },
    crash: async (i) => { await c.agents[i]!.kill("SIGKILL"); },
    leave: async (i) => { await c.agents[i]!.kill("SIGTERM"); },
    spawn: async (i) => { await c.agents[i]!.launch(); },
    pids: () => c.agents.map((a) => a.proc?.pid ?? 0),
  };
}

function serfSide(s: SerfCluster): Side {
  return {
    label: "HashiCorp serf (memberlist), lan profile",
    names: s.names,
    events: () => s.events,
    crash: (i) => s.stopAgent(i, "crash"),
    leave: (i) => s.stopAgent(i, "leave"),
    spawn: async (i) => { s.spawn(i); },
    pids: () => s.agents.map((_, i) => s.pid(i) ?? 0),
  };
}

/** Resolves with fn()'s value once it is defined; throws after timeoutMs. */
async function until<T>(what: string, fn: () => T | undefined, timeoutMs: number): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

/** The time by which every observer has logged `type` for member since t0 (undefined until all have). */
function allSaw(side: Side, member: string, types: SeenEvent["type"][], since: number): number | undefined {
  const ev = side.events();
  let last = 0;
  for (const o of side.names.filter((n) => n !== member)) {
    const e = ev.find((x) => x.observer === o && x.member === member && types.includes(x.type) && x.t >= since);
    if (!e) return undefined;
    last = Math.max(last, e.t);
  }
  return last;
}

/** Latest state every other member logged for each member: true when all see all alive. */
function formed(side: Side): boolean {
  const last = new Map<string, SeenEvent["type"]>();
  for (const e of side.events()) last.set(`${e.observer}/${e.member}`, e.type);
  return side.names.every((o) => side.names.every((m) => o === m || last.get(`${o}/${m}`) === "alive"));
}

async function rssMb(pid: number): Promise<number> {
  const s = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(s)?.[1] ?? 0) / 1024;
}

async function measure(side: Side, trials: number, idleS: number, hog: number): Promise<Row> {
  const row: Row = { label: side.label, first: [], dead: [], left: [], restart: [], rssMb: [], cpuPct: [], suspicions: 0, idleS };
  await until(`${side.label}: formed`, () => (formed(side) ? true : undefined), 120_000);
  await sleep(5000); // start-up work settles
  const hogs: ChildProcess[] = Array.from({ length: hog }, () => spawn(process.execPath, ["-e", "for(;;){}"], { stdio: "ignore" }));
  const t0 = Date.now();
  const pids = side.pids();
  const c0 = await Promise.all(pids.map(cpuSeconds));
  await sleep(idleS * 1000);
  const c1 = await Promise.all(pids.map(cpuSeconds));
  for (const h of hogs) h.kill("SIGKILL");
  const wall = (Date.now() - t0) / 1000;
  row.cpuPct = c1.map((c, i) => (100 * (c - c0[i]!)) / wall);
  row.rssMb = await Promise.all(pids.map(rssMb));
  // Episodes: thoc logs a suspect at every member (counted once per member and incarnation),
  // memberlist only at the accuser whose own probe failed (each such line counted).
  const eps = new Set(side.events().filter((e) => e.type === "suspect" && e.t >= t0).map((e) => (e.inc === undefined ? `${e.observer}/${e.member}/${e.t}` : `${e.member}/${e.inc}`)));
  row.suspicions = eps.size;
  for (let t = 0; t < trials; t++) {
    const v = 1 + (t % (side.names.length - 1));
    const name = side.names[v]!;
    const k0 = Date.now();
    await side.crash(v);
    const dead = await until(`${name} dead everywhere`, () => allSaw(side, name, ["dead"], k0), 120_000);
    const first = side.events().filter((e) => e.member === name && (e.type === "suspect" || e.type === "dead") && e.t >= k0).reduce((m, e) => Math.min(m, e.t), Infinity);
    row.first.push(first - k0);
    row.dead.push(dead - k0);
    const s0 = Date.now();
    await side.spawn(v);
    row.restart.push(await until(`${name} alive everywhere`, () => allSaw(side, name, ["alive"], s0), 120_000) - s0);
    await sleep(3000);
    const l0 = Date.now();
    await Promise.all([side.leave(v), until(`${name} left everywhere`, () => allSaw(side, name, ["left"], l0), 60_000).then((t) => row.left.push(t - l0))]);
    const r0 = Date.now();
    await side.spawn(v);
    await until(`${name} back after its leave`, () => allSaw(side, name, ["alive"], r0), 120_000);
    await sleep(3000);
  }
  return row;
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}
const sec = (ms: number) => (ms / 1000).toFixed(2);
const range = (xs: number[], d: number) => `${Math.min(...xs).toFixed(d)}-${Math.max(...xs).toFixed(d)}`;

function print(r: Row): void {
  const p50 = (xs: number[]) => (xs.length ? `${sec(pct(xs, 50))} s` : "–");
  const withMax = (xs: number[]) => (xs.length ? `${p50(xs)} (max ${sec(Math.max(...xs))})` : "–");
  console.log(`| ${r.label} | ${p50(r.first)} | ${withMax(r.dead)} | ${withMax(r.left)} | `
    + `${withMax(r.restart)} | ${range(r.rssMb, 0)} MB | ${range(r.cpuPct, 1)} % | ${r.suspicions} in ${r.idleS} s |`);
}

export async function vsSerf(argv: string[]): Promise<void> {
  const opt = (name: string, def: number) => { const i = argv.indexOf(name); return i >= 0 ? Number(argv[i + 1]) : def; };
  const trials = opt("--trials", 8), idleS = opt("--idle", 30), hog = opt("--hog", 0);
  // --only serf|lan|local: one system's row (serf still runs beside thoc's rows), e.g. a long idle window alone.
  const only = argv.includes("--only") ? argv[argv.indexOf("--only") + 1] : undefined;
  const want = (x: string) => only === undefined || only === x;
  const missing = serfMissing();
  if (missing) { console.error(`--vs-serf: ${missing}`); process.exitCode = 2; return; }
  console.log(`5 agents per system on loopback; ${trials} trials (SIGKILL -> dead everywhere -> restart -> alive everywhere; graceful stop -> left everywhere); idle window ${idleS} s${hog ? ` under ${hog} busy-loop processes` : ""}`);
  console.log("| | first detection p50 | dead at all survivors p50 | leave seen by all p50 | restart -> all alive p50 | idle RSS | idle CPU (of one core) | suspicion episodes while idle |");
  console.log("|---|---|---|---|---|---|---|---|");
  const serf = new SerfCluster(loopbackBlock(), 5, "lan");
  serf.start();
  try {
    // serf first, while the thoc lan cluster idles beside it; then thoc's rows with serf idling beside.
    if (want("serf") || want("lan")) {
      const lan = await startCluster(5, { env: { THOC_PRESET: "lan" } });
      try {
        if (want("serf")) print(await measure(serfSide(serf), trials, idleS, hog));
        if (want("lan")) print(await measure(thocSide("thoc-node, lan preset", lan), trials, idleS, hog));
      } finally { await lan.stop(); }
    }
    if (want("local")) {
      // The harness's agents run the `test` preset; this row is what --dev runs.
      const local = await startCluster(5, { env: { THOC_PRESET: "local" } });
      try {
        print(await measure(thocSide("thoc-node, `--dev` (local preset)", local), trials, idleS, hog));
      } finally { await local.stop(); }
    }
  } finally { await serf.stop(); }
}
