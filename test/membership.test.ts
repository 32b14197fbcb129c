/**
 * Membership on real sockets: 5 agent processes on 127.X.Y.n gossiping over
 * UDP/TCP with sealed datagrams (harness: local preset timers).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import dgram from "node:dgram";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { ClusterService } from "../proto/index.js";
import { createClient } from "../rpc/index.js";
import { AgentProcess, loopbackBlock, startCluster, waitFor, type Cluster } from "./harness.js";

interface JsonMember { id: string; name: string; address: string; state: string; incarnation: number; meta: Record<string, unknown> }

/** The view of one agent over gRPC (fast, for polling); the CLI's JSON is checked separately. */
async function members(a: AgentProcess): Promise<JsonMember[]> {
  const client = createClient(ClusterService, a.clientAddress, { defaultTimeoutMs: 5000 });
  try {
    const r = await client.listMembers({});
    return r.members.map((m) => ({ id: m.id, name: m.name, address: m.address, state: m.state, incarnation: Number(m.incarnation), meta: { ...m.meta } }));
  } finally {
    client.close();
  }
}

async function cliMembers(a: AgentProcess): Promise<JsonMember[]> {
  const r = await a.cli(["members", "--json"]);
  if (r.code !== 0) throw new Error(`members exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as JsonMember[];
}

function stateOf(ms: JsonMember[], name: string): string | undefined {
  return ms.find((m) => m.name === name)?.state;
}

async function metric(a: AgentProcess, re: RegExp): Promise<number> {
  const text = await (await fetch(`${a.httpUrl}/metrics`)).text();
  return text.split("\n").filter((l) => re.test(l)).reduce((s, l) => s + Number(l.split(" ").pop()), 0);
}

let c: Cluster;
before(async () => { c = await startCluster(5); });
after(async () => { await c?.stop(); });

test("5 agents: every agent sees 5 alive members, with metadata", async () => {
  await waitFor("5 alive everywhere", async () => {
    for (const a of c.agents) {
      const ms = await members(a);
      if (ms.length !== 5 || !ms.every((m) => m.state === "alive")) return false;
    }
    return true;
  }, 20_000, 250);
  const ms = await cliMembers(c.agents[2]!);
  assert.deepEqual(ms.map((m) => m.name).sort(), ["n1", "n2", "n3", "n4", "n5"]);
  for (const m of ms) {
    assert.deepEqual(Object.keys(m).slice(0, 6), ["id", "name", "address", "state", "incarnation", "meta"]);
    assert.equal(typeof m.incarnation, "number");
  }
  const n4 = ms.find((m) => m.name === "n4")!;
  assert.equal(n4.address, c.agents[3]!.gossipAddress);
  assert.equal(n4.meta.grpcAddress, c.agents[3]!.grpcAddress);
  assert.ok(Number(n4.meta.cpus) > 0 && Number(n4.meta.memoryBytes) > 0);
  assert.ok(await metric(c.agents[0]!, /^thoc_gossip_probes_total/) > 0);
  const table = await c.agents[0]!.cli(["members"]);
  assert.equal(table.code, 0);
  assert.match(table.stdout, /n5\s+\S+\s+127\.\S+:7946\s+alive/);
});

test("SIGKILL one agent: all others mark it dead", async () => {
  const victim = c.agents[4]!;
  await victim.kill("SIGKILL");
  await waitFor("n5 dead everywhere", async () => {
    for (const a of c.agents.slice(0, 4)) if (stateOf(await members(a), "n5") !== "dead") return false;
    return true;
  }, 20_000, 250);
});

test("SIGTERM one agent: others mark it left, not dead", async () => {
  const leaver = c.agents[3]!;
  const code = await leaver.kill("SIGTERM");
  assert.equal(code, 0);
  await waitFor("n4 left everywhere", async () => {
    for (const a of c.agents.slice(0, 3)) if (stateOf(await members(a), "n4") !== "left") return false;
    return true;
  }, 10_000, 200);
  await new Promise((r) => setTimeout(r, 3000));
  for (const a of c.agents.slice(0, 3)) assert.equal(stateOf(await members(a), "n4"), "left", "left stays left");
});

test("a restarted agent is alive again everywhere with a higher incarnation", async () => {
  const before = (await members(c.agents[0]!)).find((m) => m.name === "n5")!;
  assert.equal(before.state, "dead");
  await c.agents[4]!.start();
  await c.agents[3]!.start();
  await waitFor("n4 and n5 alive again everywhere", async () => {
    for (const a of c.agents) {
      const ms = await members(a);
      if (ms.length !== 5 || !ms.every((m) => m.state === "alive")) return false;
    }
    return true;
  }, 20_000, 250);
  const now = (await members(c.agents[1]!)).find((m) => m.name === "n5")!;
  assert.equal(now.id, before.id, "same node id across the restart");
  assert.ok(now.incarnation > before.incarnation, `incarnation ${now.incarnation} > ${before.incarnation}`);
});

test("WatchMembers streams the current view, then changes as they happen", async () => {
  const client = createClient(ClusterService, c.agents[0]!.clientAddress, { defaultTimeoutMs: 60_000 });
  const events: { type: string; name: string; state: string }[] = [];
  const ac = new AbortController();
  const done = (async () => {
    try {
      for await (const e of client.watchMembers({}, { signal: ac.signal })) events.push({ type: e.type, name: e.member?.name ?? "", state: e.member?.state ?? "" });
    } catch { /* cancelled */ }
  })();
  try {
    await waitFor("initial sync", () => events.filter((e) => e.type === "sync").length === 5, 10_000, 50);
    await c.agents[2]!.kill("SIGTERM");
    await waitFor("left event", () => events.some((e) => e.type === "left" && e.name === "n3"), 10_000, 50);
    await c.agents[2]!.start();
    await waitFor("join event", () => events.some((e) => e.type === "join" && e.name === "n3" && e.state === "alive"), 15_000, 50);
  } finally {
    ac.abort();
    await done;
    client.close();
  }
});

test("an agent with another cluster key cannot join, and its datagrams are dropped as auth failures", async () => {
  const root = await mkdtemp(path.join(tmpdir(), "thoc-wrongkey-"));
  const bind = `${c.block}.50`;
  const stranger = new AgentProcess("stranger", bind, path.join(root, "d"), {
    dev: true, join: [c.agents[0]!.gossipAddress],
    env: { THOC_CLUSTER_KEYS: "c3RyYW5nZXItY2x1c3Rlci1rZXktMDAwMDAwMDAwMDA=" },
  });
  const before = await metric(c.agents[0]!, /^thoc_gossip_dropped_total\{reason="auth"\}/);
  try {
    // Never ready: its object store waits for a ring from a cluster it cannot join (/readyz stays 503).
    await stranger.launch();
    await waitFor("auth drops on n1", async () => (await metric(c.agents[0]!, /^thoc_gossip_dropped_total\{reason="auth"\}/)) > before, 10_000, 200);
    const ms = await members(c.agents[0]!);
    assert.ok(!ms.some((m) => m.name === "stranger"), "the stranger is not a member");
    await waitFor("the stranger only knows itself", async () => {
      try { return (await cliMembers(stranger)).length === 1; } catch { return false; }
    }, 20_000, 500);
  } finally {
    await stranger.kill("SIGKILL");
    await rm(root, { recursive: true, force: true });
  }
});

test("a gossip port already in use: one clear line and exit code 3, no stack trace", async () => {
  const bind = `${loopbackBlock()}.9`;
  const blocker = dgram.createSocket("udp4");
  await new Promise<void>((r) => blocker.bind(7946, bind, () => r()));
  const root = await mkdtemp(path.join(tmpdir(), "thoc-port-"));
  const a = new AgentProcess("blocked", bind, path.join(root, "d"), { dev: true });
  try {
    a.spawn();
    await waitFor("exit", () => !a.running, 15_000, 50);
    assert.equal(a.exitCode, 3, a.output);
    assert.match(a.output, /gossip \(UDP\): cannot listen on [0-9.]+:7946: address already in use \(another agent running\? choose another --gossip-port or --bind\)/);
    assert.doesNotMatch(a.output, /\n\s+at /, "no stack trace");
  } finally {
    blocker.close();
    await a.kill("SIGKILL");
    await rm(root, { recursive: true, force: true });
  }
});
