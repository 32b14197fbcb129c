/**
 * Cluster formation under CPU pressure (issue 19): 5 agents started at once
 * while busy-loop processes hog the CPUs. Each start keeps its own event loop
 * busy for seconds (module loading, LevelDB, the other subsystems), which is
 * when a peer's probes go unanswered; before the fix a member with a 3-member
 * view judged a starting node alone at the *minimum* suspicion timeout and
 * declared it dead with 0 confirmations. No live node may be declared dead.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import path from "node:path";
import { AgentProcess, Cluster, loopbackBlock, sleep, waitFor } from "./harness.js";

let c: Cluster | undefined;
const hogs: ChildProcess[] = [];
after(async () => {
  for (const h of hogs) h.kill("SIGKILL");
  await c?.stop();
});

interface Line { msg?: string; member?: string; confirmations?: number }

const lines = (a: AgentProcess) => a.logs() as Line[];

/** How a's log says it last saw each other member (read from the log: a CLI process per poll would add load of its own). */
function views(a: AgentProcess): Map<string, string> {
  const v = new Map<string, string>();
  for (const l of lines(a)) {
    const m = /^member (join|alive|suspect|dead|left)$/.exec(l.msg ?? "");
    if (m && l.member) v.set(l.member, m[1] === "join" ? "alive" : m[1]!);
  }
  return v;
}

test("5 agents started at once under a CPU hog: 0 dead verdicts for live nodes", { timeout: 60_000 }, async () => {
  // One busy loop per core: with the agents' own start-up that is a load of ~7+ on 2 cores.
  for (let i = 0; i < Math.max(2, cpus().length); i++) {
    hogs.push(spawn(process.execPath, ["-e", "for(;;){}"], { stdio: "ignore" }));
  }
  await sleep(300);
  assert.ok(hogs.every((h) => h.exitCode === null), "the CPU hogs run (the test can fail)");
  c = new Cluster(await mkdtemp(path.join(tmpdir(), "thoc-formation-")), loopbackBlock(), {});
  for (let i = 0; i < 5; i++) c.add();
  const agents = c.agents;
  // All at once, not waiting for readiness: formation is the moment under test.
  await Promise.all(agents.map((a) => a.launch()));
  await waitFor("every agent sees the 4 others alive", () => agents.every((a) => {
    const v = views(a);
    return v.size === 4 && [...v.values()].every((s) => s === "alive");
  }), 45_000, 250);
  // Formation is over; keep the pressure on a little longer (the local preset's maximum
  // suspicion timeout is 4.8 s), so a suspicion started late has time to turn into a verdict.
  await sleep(5000);
  const dead: string[] = [];
  let suspicions = 0;
  for (const a of agents) {
    for (const l of lines(a)) {
      if (l.msg === "member dead") dead.push(`${a.name} declared ${l.member} dead`);
      if (l.msg === "suspicion timed out: declaring dead") dead.push(`${a.name}: ${l.member} timed out with ${l.confirmations} confirmations`);
      if (l.msg === "member suspect") suspicions++;
    }
  }
  assert.ok(agents.every((a) => a.running), "every agent is still running");
  assert.deepEqual(dead, [], `dead verdicts for live nodes (${suspicions} suspicions, all must be refuted)`);
});
