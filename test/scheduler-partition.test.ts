/**
 * The scheduler leader cut off in a minority (SPEC §4): five real agents in
 * network namespaces (test/netns.ts), split {2 | 3} by iptables with the
 * leader on the small side. The minority stops placing (a create sent to
 * either of its nodes fails within a bound with UNAVAILABLE naming why), the
 * majority elects a leader in a higher term and places; after the heal one
 * leader remains, the old one follows, every VM is listed once and held by
 * exactly one node (each node's own records), and nothing asked of the
 * minority was created, until a retry with the same request id, once.
 * Production mode (node certificates from a test CA, as netns agents run).
 * Needs root; skipped with a message otherwise.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { waitFor, type AgentProcess } from "./harness.js";
import { NetnsLab, netnsUnavailable } from "./netns.js";
import { S3_ENV, waitRing } from "./objectstore-util.js";
import { ThocError } from "../errors/index.js";
import { SchedulerService, VmService } from "../proto/index.js";
import { createClient, credentials, type Client } from "../rpc/index.js";

const skip = netnsUnavailable();
const NAMES = ["n1", "n2", "n3", "n4", "n5"];
/**
 * An image's record and files are object-store keys with 3 replicas read at
 * R = 2: with 2 of a key's 3 preferred nodes on the minority side (3 in 10
 * layouts) the majority cannot read it, and a create there would fail for
 * that reason, not the scheduler's. So: several images, each cached on
 * every node before the split, and the majority creates with one whose
 * record it can read.
 */
const IMAGES = ["tiny-a", "tiny-b", "tiny-c", "tiny-d", "tiny-e"];
/** forward()'s retry window (5 s with the local preset's timers) plus CLI-free slack on a loaded 2-core machine. */
const REFUSAL_BOUND_MS = 15_000;

interface LeaderDoc {
  leader: { id: string; name: string } | null; term: number; role: string; acting: boolean;
  voters: { id: string; name: string; state: string }[]; node: { id: string; name: string };
}
type VmClient = Client<typeof VmService.method>;
type SchedClient = Client<typeof SchedulerService.method>;

let lab: NetnsLab | undefined;
let dir = "";
const clients = new Map<string, VmClient>();
const scheds = new Map<string, SchedClient>();

before(async () => {
  if (skip) return;
  dir = await mkdtemp(path.join(tmpdir(), "thoc-sched-split-"));
  // n1 starts the cluster (its first voter); loadFactor 16 so capacity never refuses the few tiny VMs here.
  lab = await NetnsLab.create(5, { env: { ...S3_ENV, THOC_LIMITS_LOAD_FACTOR: "16" }, seeds: [1], bootstrap: 1 });
  await Promise.all(lab.agents.map((a) => a.start(60_000)));
  // Every ring holds all five before the images go in, so their replicas sit on their preferred nodes.
  await waitRing(lab.agents, NAMES, 60_000);
  await writeFile(path.join(dir, "kernel"), randomBytes(4096));
  for (const img of IMAGES) {
    const r = await lab.agents[0]!.cli(["image", "import", img, "--kernel", path.join(dir, "kernel"), "--cmdline", "console=ttyS0"], 60_000);
    assert.equal(r.code, 0, `image import ${img}: ${r.stderr}`);
  }
  for (const a of lab.agents) {
    clients.set(a.name, createClient(VmService, a.clientAddress, { credentials: credentials.createInsecure(), defaultTimeoutMs: 60_000 }));
    scheds.set(a.name, createClient(SchedulerService, a.clientAddress, { credentials: credentials.createInsecure(), defaultTimeoutMs: 10_000 }));
  }
});
after(async () => {
  for (const c of [...clients.values(), ...scheds.values()]) c.close();
  if (lab) await lab.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const vmc = (a: AgentProcess) => clients.get(a.name)!;
/** `leader --json`, as the CLI prints it. */
const leaderCli = async (a: AgentProcess): Promise<LeaderDoc> => {
  const r = await a.cli(["leader", "--json"], 30_000);
  if (r.code !== 0) throw new Error(`leader on ${a.name}: ${r.stderr}`);
  return JSON.parse(r.stdout) as LeaderDoc;
};
/**
 * The same document through SchedulerService.GetLeader: for polling, five CLI
 * processes every few hundred ms starve the agents' 60 ms heartbeats on 2 cores.
 */
const leaderOf = async (a: AgentProcess): Promise<LeaderDoc> => {
  const r = await scheds.get(a.name)!.getLeader({});
  return {
    leader: r.leader ? { id: r.leader.id, name: r.leader.name } : null, term: Number(r.term), role: r.role, acting: r.acting,
    voters: r.voters.map((v) => ({ id: v.id, name: v.name, state: v.state })), node: { id: r.nodeId, name: r.nodeName },
  };
};
const spec = (name: string, image: string) => ({ name, image, vcpus: 1, ramMb: 16, diskGb: 0, network: { mode: "none" } });

/**
 * All of `agents` name one leader, exactly one of them says it leads, and
 * `answering` of its 3 voters answer it (the majority side: 2).
 */
async function agreedLeader(agents: AgentProcess[], what: string, ok: (d: LeaderDoc) => boolean = () => true, timeoutMs = 60_000, answering = 3, get = leaderOf): Promise<LeaderDoc> {
  let last = "";
  return waitFor(what, async () => {
    const docs = await Promise.all(agents.map(get));
    last = JSON.stringify(docs.map((d) => [d.node.name, d.role, d.term, d.leader?.name, d.voters.map((v) => `${v.name}:${v.state}`).join(" ")]));
    const ids = new Set(docs.map((d) => d.leader?.id));
    const lead = docs.find((d) => d.role === "leader");
    if (ids.size !== 1 || !lead || !lead.leader || !ok(lead)) return undefined;
    if (lead.voters.length !== 3 || lead.voters.filter((v) => v.state !== "unreachable").length < answering) return undefined;
    assert.equal(docs.filter((x) => x.role === "leader").length, 1, `exactly one node says it leads: ${JSON.stringify(docs.map((d) => [d.node.name, d.role, d.term]))}`);
    return lead;
  }, timeoutMs, 300).catch((e: Error) => { throw new Error(`${e.message}; last views ${last}`); });
}

/** Waits until each agent's gossip view holds `up` alive and every other member dead. */
async function waitView(agents: AgentProcess[], up: string[]): Promise<void> {
  await Promise.all(agents.map((a) => waitFor(`${a.name} sees exactly ${up.join(",")} up`, async () => {
    const r = await a.cli(["members", "--json"], 30_000);
    if (r.code !== 0) return false;
    const ms = JSON.parse(r.stdout) as { name: string; state: string }[];
    return ms.every((m) => (up.includes(m.name) ? m.state === "alive" : m.state === "dead"));
  }, 60_000, 500)));
}

/** Each node's own records (ListVms local): name → the nodes holding it. */
async function holders(agents: AgentProcess[]): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const a of agents) {
    for (const v of (await vmc(a).listVms({ local: true })).vms) out.set(v.name, [...(out.get(v.name) ?? []), a.name]);
  }
  return out;
}

test("leader in a 2 | 3 minority: the minority refuses creates, the majority elects and places, one leader and no duplicate VM after the heal", { skip, timeout: 300_000 }, async (t) => {
  const agents = lab!.agents;
  const byName = (n: string) => agents.find((a) => a.name === n)!;
  // VMs on every node before the split, so both sides hold some; one per image, which also puts every image's
  // files in every node's cache (a create then needs only the image record from the store: see IMAGES).
  const expected = new Set<string>();
  for (const img of IMAGES) {
    await Promise.all(agents.map(async (a, i) => {
      const name = `pre-${img}-${a.name}`;
      const { vm } = await vmc(agents[i % 2]!).createVm({ spec: spec(name, img), node: a.name, requestId: randomUUID() });
      assert.equal(vm?.node, a.name);
      expected.add(name);
    }));
  }

  const num = (a: AgentProcess) => Number(a.name.slice(1));
  let d0: LeaderDoc | undefined, old: AgentProcess | undefined, minority: AgentProcess[] = [], majority: AgentProcess[] = [], split = 0;
  for (let attempt = 1; ; attempt++) {
    const d = await agreedLeader(agents, "all five agree on one leader with 3 voters");
    const leader = byName(d.leader!.name);
    const voters = d.voters.map((v) => v.name);
    // The minority: the leader and one more node. The voters are any 3 of
    // the 5, and the majority can elect only if it keeps 2 of them: so the
    // second minority node is a non-voter when there is one (with 3 voters
    // of 5 there always are two), else a voter (the majority still has 2 of 3).
    const partner = NAMES.find((n) => n !== leader.name && !voters.includes(n)) ?? voters.find((n) => n !== leader.name)!;
    minority = [leader, byName(partner)];
    majority = agents.filter((a) => !minority.includes(a));
    assert.ok(voters.filter((v) => majority.some((a) => a.name === v)).length >= 2, `the majority ${majority.map((a) => a.name)} keeps 2 of the voters ${voters}`);
    lab!.partition([minority.map(num), majority.map(num)]);
    split = Date.now();
    // The leader may have changed between that look and the split (a loaded machine misses heartbeats): the
    // cut-off node still in the term we saw means the split caught the leader we chose; else heal and choose again.
    const cut = await leaderOf(leader);
    console.log(`  leader ${leader.name} (term ${d.term}), voters ${voters.join(",")}; split {${minority.map((a) => a.name)}} | {${majority.map((a) => a.name)}}; ${leader.name} at the cut: ${cut.role}, term ${cut.term}`);
    if (cut.term === d.term) { d0 = d; old = leader; break; }
    assert.ok(attempt < 3, "the leader changed under every one of 3 splits");
    lab!.heal();
  }
  assert.ok(d0 && old);

  const d1 = await agreedLeader(majority, "the majority elects a new leader", (d) => d.leader!.id !== d0.leader!.id, 30_000, 2);
  const electedMs = Date.now() - split;
  assert.ok(d1.term > d0.term, `the new leader's term ${d1.term} is above the old ${d0.term}`);
  assert.ok(majority.some((a) => a.name === d1.leader!.name));
  // Only with gossip settled do the refusals name the missing voters (before, "an election is in progress").
  await Promise.all([waitView(minority, minority.map((a) => a.name)), waitView(majority, majority.map((a) => a.name))]);
  const settledMs = Date.now() - split;

  // An image the majority can read (see IMAGES).
  let unread: string[] = [];
  const image = await waitFor("an image the majority can read", async () => {
    unread = [];
    for (const img of IMAGES) {
      const r = await majority[0]!.cli(["image", "show", img, "--json"], 30_000);
      if (r.code === 0) return img;
      unread.push(`${img}: ${r.stderr.trim()}`);
    }
    return undefined;
  }, 20_000, 1000).catch((e: Error) => { throw new Error(`${e.message}: ${unread.join("; ")}`); });

  // The minority refuses, within a bound, saying why.
  const refused: { name: string; requestId: string; via: AgentProcess }[] = [];
  for (const a of minority) {
    const req = { spec: spec(`minority-${a.name}`, image), requestId: randomUUID() };
    const t0 = Date.now();
    const err = await vmc(a).createVm(req).then((r) => r, (e: unknown) => e);
    const ms = Date.now() - t0;
    assert.ok(err instanceof ThocError, `a create through ${a.name} (minority) was refused, got ${JSON.stringify(err, (_k, v) => (typeof v === "bigint" ? String(v) : v))}`);
    console.log(`  create through ${a.name} (minority) refused after ${ms} ms: ${err.code}: ${err.message}`);
    assert.equal(err.code, "unavailable", err.message);
    assert.ok(ms < REFUSAL_BOUND_MS, `refused after ${ms} ms (bound ${REFUSAL_BOUND_MS})`);
    const why = () => assert.match(err.message, /voters .* reachable and a leader needs \d|cannot schedule|lease lost|majority/, `the refusal through ${a.name} names the reason`);
    // The old leader says its lease is gone; a non-voter, once it stopped hearing the deposed leader, says this side has no majority of voters.
    why();
    refused.push({ name: req.spec.name, requestId: req.requestId, via: a });
  }

  // The old leader stepped down and, a voter that never wins a pre-vote, did not inflate its term.
  const od = await leaderOf(old);
  assert.notEqual(od.role, "leader", `${old.name} still says it leads: ${JSON.stringify(od)}`);
  assert.equal(od.acting, false);
  assert.equal(od.term, d0.term, "pre-vote kept the cut-off voter's term");

  // The majority places, on its own side.
  for (const a of majority) {
    const { vm } = await vmc(a).createVm({ spec: spec(`major-${a.name}`, image), requestId: randomUUID() });
    assert.ok(majority.some((m) => m.name === vm?.node), `major-${a.name} placed on ${vm?.node}, a majority node`);
    expected.add(`major-${a.name}`);
  }

  lab!.heal();
  const healed = Date.now();
  const d2 = await agreedLeader(agents, "all five agree on one leader after the heal", (d) => d.term >= d1.term, 60_000);
  const agreedMs = Date.now() - healed;
  assert.notEqual(d2.leader!.id, d0.leader!.id, "the deposed leader does not lead again");
  // As operators see it: `leader --json` on every node agrees too, and the old leader follows.
  const d3 = await agreedLeader(agents, "leader --json on all five names one leader", (d) => d.term >= d2.term, 30_000, 3, leaderCli);
  assert.notEqual(d3.leader!.id, d0.leader!.id, "the deposed leader does not lead again");
  assert.equal((await leaderCli(old)).role, "follower", `${old.name} follows`);
  const elections = agents.flatMap((a) => a.logs().filter((l) => l.msg === "scheduler: leader elected" && l.role === "leader" && Number(l.term) > d1.term).map((l) => `${a.name}@${String(l.term)}`));
  if (elections.length) console.log(`  elections after the heal (a loaded machine can miss heartbeats): ${elections.join(" ")}`);
  console.log(`  new leader ${d1.leader!.name} (term ${d1.term}) ${electedMs} ms after the split, gossip settled after ${settledMs} ms; after the heal all five follow ${d2.leader!.name} (term ${d2.term}) within ${agreedMs} ms`);

  // Every VM listed exactly once through every node, and held by exactly one node.
  const want = [...expected].sort();
  for (const a of agents) {
    await waitFor(`${a.name} lists every VM once`, async () => {
      const names = (await vmc(a).listVms({})).vms.map((v) => v.name).sort();
      return JSON.stringify(names) === JSON.stringify(want) ? true : (() => { throw new Error(`${a.name} lists ${names.join(",")}`); })();
    }, 60_000, 500);
  }
  let held = await holders(agents);
  for (const n of want) assert.equal(held.get(n)?.length, 1, `${n} is held by ${held.get(n)?.join(",") ?? "no node"}`);
  assert.deepEqual([...held.keys()].sort(), want, "no node holds a VM the creates did not make (the minority's refused creates included)");

  // A refused create retried after the heal with its request id makes the VM once; a second retry answers with it.
  const r = refused[0]!;
  const first = await vmc(r.via).createVm({ spec: spec(r.name, image), requestId: r.requestId });
  const again = await vmc(majority[0]!).createVm({ spec: spec(r.name, image), requestId: r.requestId });
  assert.equal(again.vm?.uuid, first.vm?.uuid, "the same request id answers with the same VM");
  held = await holders(agents);
  assert.equal(held.get(r.name)?.length, 1, `${r.name} is held by ${held.get(r.name)?.join(",")}`);
  assert.equal(held.get(refused[1]!.name), undefined, `${refused[1]!.name} was never retried and does not exist`);
});
