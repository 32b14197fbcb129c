/**
 * The cluster-wide event stream on three agents: a follower on n1 sees n2's
 * VM lifecycle and audit events and the membership changes when n3 is
 * SIGKILLed (peer streams authenticated like every node-to-node call: mutual
 * TLS under the cluster CA in production mode); a follower that disconnects
 * and comes back with its last cursor gets exactly the events it missed, no
 * duplicates and no gaps; filters narrow the stream.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { CLI, REPO_ROOT, startCluster, waitFor, type AgentProcess, type Cluster } from "./harness.js";

let c: Cluster;
before(async () => { c = await startCluster(3); });
after(() => c.stop());

interface Ev {
  kind: string; node: string; nodeId: string; epoch: number; seq: number; cursor: string;
  vm?: string; action?: string; member?: string; method?: string; outcome?: string; by?: string; missed?: number;
}

class Follower {
  private out = "";
  err = "";
  readonly proc: ChildProcess;
  constructor(a: AgentProcess, extra: string[] = []) {
    this.proc = spawn(process.execPath, [CLI, ...a.cliTarget, "events", "--follow", "--json", ...extra], { cwd: REPO_ROOT, env: { ...process.env, ...a.cliEnv }, stdio: ["ignore", "pipe", "pipe"] });
    this.proc.stdout!.on("data", (b: Buffer) => (this.out += b));
    this.proc.stderr!.on("data", (b: Buffer) => (this.err += b));
  }
  events(): Ev[] {
    return this.out.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Ev);
  }
  async until(what: string, fn: (es: Ev[]) => boolean, ms = 30_000): Promise<Ev[]> {
    return (await waitFor(what, () => { const es = this.events(); return fn(es) && es; }, ms)) as Ev[];
  }
  stop(): void { this.proc.kill(); }
}

const key = (e: Ev) => `${e.nodeId}@${e.epoch}#${e.seq}`;

/** Per source and epoch: seq numbers strictly increasing by one (no gap, no duplicate) after the first seen. */
function assertContiguous(es: Ev[], what: string): void {
  const last = new Map<string, number>();
  for (const e of es.filter((x) => x.kind !== "missed")) {
    const src = `${e.nodeId}@${e.epoch}`;
    const p = last.get(src);
    if (p !== undefined) assert.equal(e.seq, p + 1, `${what}: ${e.node} went from #${p} to #${e.seq}`);
    last.set(src, e.seq);
  }
}

test("one stream for the cluster: n2's VM and audit events and n3's death seen from n1; resume by cursor, no gaps or duplicates", async () => {
  const [n1, n2, n3] = c.agents as [AgentProcess, AgentProcess, AgentProcess];
  const all = new Follower(n1);
  const vmOnly = new Follower(n1, ["--kind", "vm", "--vm", "ev1"]);
  try {
    // n1 learns of the others (joined events from its own gossip view) through its fan-in.
    await all.until("n1 sees n2 and n3 join", (es) => ["n2", "n3"].every((m) => es.some((e) => e.kind === "node" && e.action === "joined" && e.member === m)));

    const kern = path.join(c.root, "kernel");
    writeFileSync(kern, Buffer.alloc(8192, 1));
    let r = await n2.cli(["image", "import", "tiny", "--kernel", kern, "--initrd", kern, "--cmdline", "console=ttyS0"]);
    assert.equal(r.code, 0, r.stderr);
    r = await n2.cli(["vm", "create", "ev1", "--image", "tiny", "--vcpus", "1", "--ram", "128", "--disk", "1", "--node", "n2"]);
    assert.equal(r.code, 0, r.stderr);

    const es = await all.until("n2's VM events on n1's stream", (x) => x.some((e) => e.kind === "audit" && e.node === "n2" && e.method?.endsWith("/CreateVm")));
    const ev1 = es.filter((e) => e.kind === "vm" && e.vm === "ev1");
    // Pinned to n2 (--node); placed through the scheduler leader.
    assert.deepEqual(ev1.map((e) => [e.node, e.action, e.by]), [["n2", "created", "scheduler"], ["n2", "running", "scheduler"]]);
    const audit = es.find((e) => e.kind === "audit" && e.method?.endsWith("/CreateVm"))!;
    assert.equal(audit.outcome, "OK");
    // n2's VM events come before its audit record of the call (the record is written when the call ends).
    assert.ok(es.indexOf(ev1[1]!) < es.indexOf(audit));
    const filtered = await vmOnly.until("the filtered follower sees ev1", (x) => x.length >= 2);
    assert.deepEqual(filtered.map((e) => [e.kind, e.vm, e.action]), [["vm", "ev1", "created"], ["vm", "ev1", "running"]]);

    assert.equal(await n3.kill("SIGKILL"), null);
    await all.until("n3 suspect and dead, as n1 and n2 see it", (x) =>
      ["n1", "n2"].every((src) => x.some((e) => e.kind === "node" && e.node === src && e.member === "n3" && e.action === "dead"))
      && x.some((e) => e.kind === "node" && e.member === "n3" && e.action === "suspect"), 60_000);
    assertContiguous(all.events(), "live follower");

    // The follower goes away; events happen meanwhile; a new one with its last cursor gets exactly those.
    all.stop();
    const seen = all.events();
    const cursor = seen.at(-1)!.cursor;
    r = await n2.cli(["vm", "stop", "ev1"]);
    assert.equal(r.code, 0, r.stderr);
    r = await n2.cli(["vm", "delete", "ev1"]);
    assert.equal(r.code, 0, r.stderr);
    const resumed = new Follower(n1, ["--cursor", cursor]);
    try {
      const more = await resumed.until("the resumed follower sees ev1 deleted", (x) => x.some((e) => e.kind === "vm" && e.action === "deleted"));
      const seenKeys = new Set(seen.map(key));
      assert.deepEqual(more.filter((e) => seenKeys.has(key(e))).map(key), [], "no event twice");
      assertContiguous([...seen, ...more], "follower then resumed follower");
      assert.deepEqual(more.filter((e) => e.kind === "vm").map((e) => [e.node, e.vm, e.action]),
        [["n2", "ev1", "stopping"], ["n2", "ev1", "stopped"], ["n2", "ev1", "deleted"]]);
      assert.ok(!more.some((e) => e.kind === "missed"), "nothing was dropped: no missed marker");
    } finally {
      resumed.stop();
    }

    // Without --follow: the recent events of every live node (n3 is down: skipped), each with its cursor.
    r = await n1.cli(["events", "--json", "--kind", "node,vm"]);
    assert.equal(r.code, 0, r.stderr);
    const recent = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as Ev);
    assert.ok(recent.every((e) => e.kind === "node" || e.kind === "vm"));
    assert.deepEqual(new Set(recent.map((e) => e.node)), new Set(["n1", "n2"]));
    // `node remove` is a node event too, seen from any node.
    r = await n1.cli(["node", "remove", "n3"]);
    assert.equal(r.code, 0, r.stderr);
    r = await n2.cli(["events", "--json", "--kind", "node", "--node", "n3"]);
    assert.equal(r.code, 0, r.stderr);
    const aboutN3 = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as Ev);
    assert.ok(aboutN3.every((e) => e.member === "n3"));
    assert.ok(aboutN3.some((e) => e.node === "n1" && e.action === "removed"), r.stdout);
    r = await n1.cli(["events", "--kind", "vms"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown kind "vms"/);
  } finally {
    all.stop();
    vmOnly.stop();
  }
});

test("a --follow stream survives a crash of the node it talks to: it reconnects and resumes from its last cursor", async () => {
  const [n1, n2] = c.agents as [AgentProcess, AgentProcess];
  // With n3 dead the image needs n1 for its read quorum: the VM is made before n1 goes down.
  let r = await n2.cli(["vm", "create", "ev2", "--image", "tiny", "--vcpus", "1", "--ram", "128", "--disk", "1", "--node", "n2"]);
  assert.equal(r.code, 0, r.stderr);
  const f = new Follower(n1);
  try {
    const before = await f.until("the recent events", (x) => x.some((e) => e.vm === "ev2" && e.action === "running"));
    const epoch1 = before.find((e) => e.node === "n1")!.epoch;
    assert.equal(await n1.kill("SIGKILL"), null);
    await n1.start();
    r = await n2.cli(["vm", "stop", "ev2"]);
    assert.equal(r.code, 0, r.stderr);
    const es = await f.until("ev2 stopped, through the restarted n1", (x) => x.some((e) => e.kind === "vm" && e.vm === "ev2" && e.action === "stopped"));
    assert.match(f.err, /event stream from .* broke .*reconnecting from the last cursor/);
    assert.equal(new Set(es.map(key)).size, es.length, "no event twice");
    assertContiguous(es, "across the reconnect");
    // n1 restarted (a new epoch): what it had not sent of the old one is gone, and the stream says so.
    const missed = es.find((e) => e.kind === "missed" && e.node === "n1");
    assert.ok(missed, "a missed marker for n1");
    assert.ok(es.some((e) => e.node === "n1" && e.epoch > epoch1), "n1's new epoch follows");
    r = await n2.cli(["vm", "delete", "ev2"]);
    assert.equal(r.code, 0, r.stderr);
  } finally {
    f.stop();
  }
});
