/**
 * Leave and rejoin timings on real processes (issue 19), read from the
 * agents' own log lines, so polling adds nothing to the figures:
 *  - a SIGKILLed and restarted agent is alive at every peer within 1 s of its
 *    "gossip started" line;
 *  - SIGTERM: every peer logs `member left` within 1 s of the signal (the
 *    leave goes out before the gRPC drain, not after it);
 *  - the start log names the preset in effect (plain --dev runs `local`).
 * Timings on a shared 2-core machine are noisy: each bound is checked on the
 * median of a few trials, and every trial must stay under a loose ceiling.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { ClusterService } from "../proto/index.js";
import { createClient } from "../rpc/index.js";
import { AgentProcess, loopbackBlock, startCluster, waitFor, type Cluster } from "./harness.js";

/** What the issue asks for (serf: 0.4-0.5 s to rejoin, 0.55 s for a leave). */
const BOUND_MS = 1000;
/** No single trial may be this slow, even on a loaded machine. */
const CEILING_MS = 3000;

interface LogLine { time: string; msg: string; id?: string; member?: string; subsystem?: string; config?: { preset?: string }; preset?: string }

const lines = (a: AgentProcess) => a.logs() as unknown as LogLine[];
const at = (l: LogLine) => Date.parse(l.time);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** When peer first logged `member <type>` for node id at or after since (ms), or undefined. */
function eventAt(peer: AgentProcess, type: string, id: string, since: number): number | undefined {
  const l = lines(peer).find((x) => x.msg === `member ${type}` && x.id === id && at(x) >= since);
  return l && at(l);
}

async function nodeId(a: AgentProcess): Promise<string> {
  return waitFor(`${a.name}'s node id`, () => a.logs().find((l) => l.msg === "store opened")?.nodeId as string | undefined, 10_000, 50);
}

/** Over gRPC rather than the CLI: a CLI process per poll is slow on a loaded machine. */
async function stateEverywhere(peers: AgentProcess[], id: string, state: string): Promise<boolean> {
  for (const p of peers) {
    const client = createClient(ClusterService, p.clientAddress, { defaultTimeoutMs: 5000 });
    try {
      const m = (await client.listMembers({})).members.find((x) => x.id === id);
      if (m?.state !== state) return false;
    } finally {
      client.close();
    }
  }
  return true;
}

let c: Cluster;
const lone: { a?: AgentProcess; root?: string } = {};
before(async () => {
  // The periodic re-join to seeds and dead members as slow as in production (lan: 30 s), so a restarted
  // seed (which has no --join of its own) can only come back in time through its own join.
  // Started beside the cluster: the preset test only reads its first log line.
  lone.root = await mkdtemp(path.join(tmpdir(), "thoc-preset-"));
  // THOC_PRESET empty counts as unset: the harness's THOC_PRESET=local must not decide it.
  lone.a = new AgentProcess("preset", `${loopbackBlock()}.60`, path.join(lone.root, "d"), { dev: true, env: { THOC_PRESET: "" } });
  await lone.a.launch();
  // THOC_REJOIN_TEST_PRESET=lan measures the same with production timers (slower: ~2 min).
  const env: Record<string, string> = { THOC_GOSSIP_REJOIN_INTERVAL: "30000" };
  if (process.env.THOC_REJOIN_TEST_PRESET) env.THOC_PRESET = process.env.THOC_REJOIN_TEST_PRESET;
  c = await startCluster(4, { env });
});
after(async () => {
  await c?.stop();
  await lone.a?.kill("SIGKILL");
  if (lone.root) await rm(lone.root, { recursive: true, force: true });
});

test("a SIGKILLed agent that restarts is alive at every peer within 1 s of its gossip start", async () => {
  const took: number[] = [];
  let suspected = 0;
  // The seed everyone joined (it has no --join), another member, the seed again.
  for (const victim of [c.agents[0]!, c.agents[2]!, c.agents[0]!]) {
    const peers = c.agents.filter((a) => a !== victim);
    const id = await nodeId(victim);
    await victim.kill("SIGKILL");
    // The hard case: every peer has declared it dead, so none probes it; only its own join brings it back.
    await waitFor("victim dead everywhere", () => stateEverywhere(peers, id, "dead"), 20_000, 200);
    const spawned = Date.now();
    victim.output = "";
    await victim.launch();
    const started = await waitFor("gossip started", () => {
      const l = lines(victim).find((x) => x.msg === "gossip started");
      return l && at(l);
    }, 20_000, 20);
    const seen = await waitFor("alive at every peer", () => {
      const ts = peers.map((p) => eventAt(p, "join", id, spawned));
      return ts.every((t) => t !== undefined) && Math.max(...(ts as number[]));
    }, 10_000, 50);
    took.push((seen as number) - (started as number));
    suspected += peers.filter((p) => eventAt(p, "suspect", id, spawned) !== undefined).length;
  }
  await Promise.all(c.agents.map((a) => a.waitReady()));
  const med = median(took);
  console.log(`restart: gossip started -> alive at all ${c.agents.length - 1} peers: ${took.join(", ")} ms (median ${med}); peers that suspected it while it started: ${suspected}`);
  assert.ok(med <= BOUND_MS, `median ${med} ms > ${BOUND_MS} ms (trials: ${took.join(", ")})`);
  assert.ok(Math.max(...took) <= CEILING_MS, `a trial took ${Math.max(...took)} ms (trials: ${took.join(", ")})`);
});

test("SIGTERM: every peer records the agent as left within 1 s of the signal", async () => {
  const took: number[] = [];
  // n4, then n3, then n2 leave, each seen by those still there.
  for (const leaver of [c.agents[3]!, c.agents[2]!, c.agents[1]!]) {
    const peers = c.agents.filter((a) => a.running && a !== leaver);
    const id = await nodeId(leaver);
    await waitFor("leaver alive everywhere", () => stateEverywhere(peers, id, "alive"), 20_000, 200);
    // A client following the leaver (a dashboard, `members --watch`): an open call the gRPC drain waits for.
    const client = createClient(ClusterService, leaver.clientAddress, { defaultTimeoutMs: 60_000 });
    let events = 0;
    const watching = (async () => { try { for await (const _ of client.watchMembers({})) events++; } catch { /* ended by the stop */ } })();
    await waitFor("the watch under way", () => events > 0, 5000, 20);
    const signalled = Date.now();
    const exited = leaver.kill("SIGTERM");
    const seen = await waitFor("left at every peer", () => {
      const ts = peers.map((p) => eventAt(p, "left", id, signalled));
      return ts.every((t) => t !== undefined) && Math.max(...(ts as number[]));
    }, 10_000, 50);
    assert.equal(await exited, 0, "clean exit");
    await watching;
    client.close();
    took.push((seen as number) - signalled);
    // Left, never suspected or dead on the way out (it answers probes until it exits).
    for (const p of peers) {
      assert.equal(eventAt(p, "suspect", id, signalled), undefined, `${p.name} suspected the leaver`);
      assert.equal(eventAt(p, "dead", id, signalled), undefined, `${p.name} declared the leaver dead`);
    }
  }
  const med = median(took);
  console.log(`SIGTERM -> left at all (3, 2, 1) peers: ${took.join(", ")} ms (median ${med})`);
  assert.ok(med <= BOUND_MS, `median ${med} ms > ${BOUND_MS} ms (trials: ${took.join(", ")})`);
  assert.ok(Math.max(...took) <= CEILING_MS, `a trial took ${Math.max(...took)} ms (trials: ${took.join(", ")})`);
});

test("the start log names the preset in effect: plain --dev runs the local timers and says so", async () => {
  const starting = await waitFor("starting line", () => lines(lone.a!).find((l) => l.msg === "starting"), 20_000, 50);
  assert.equal(starting.preset, "local");
  assert.equal(starting.config?.preset, "local");
  await lone.a?.kill("SIGKILL");
});
