/**
 * Five real agents (dev mode, scheduler.strategy spread): the voter set stops
 * at scheduler.voters (3) however many nodes join; spread puts five VMs on
 * five nodes; SIGKILL the leader: a new one leads within seconds and a create
 * succeeds; the old leader restarts as a follower (it keeps its voter seat:
 * down is not removed); `thoc-node node remove` of a voter gives its seat to
 * another live node; a GPU request lands only on the node that has the
 * device, and a device no node has is NOT_FOUND.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { startCluster, waitFor, type AgentProcess, type Cluster } from "./harness.js";
import { S3_ENV, waitRing } from "./objectstore-util.js";
import { gpuDriverUri } from "../vm/testutil.js";

let cluster: Cluster;
interface LeaderDoc { leader: { id: string; name: string } | null; term: number; role: string; voters: { id: string; name: string; state: string }[] }
interface VmDoc { name: string; node: string }

const json = async <T>(a: AgentProcess, args: string[]): Promise<T> => {
  const r = await a.cli([...args, "--json"], 60_000);
  assert.equal(r.code, 0, `${args.join(" ")} on ${a.name}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
};
const leaderOf = (a: AgentProcess) => json<LeaderDoc>(a, ["leader"]);
const create = (a: AgentProcess, name: string) =>
  a.cli(["vm", "create", name, "--image", "tiny", "--vcpus", "1", "--ram", "64", "--disk", "1", "--network", "none", "--json"], 60_000);

before(async () => {
  cluster = await startCluster(5, { dev: true, env: { ...S3_ENV, THOC_SCHEDULER_STRATEGY: "spread" } });
  await waitRing(cluster.agents, ["n1", "n2", "n3", "n4", "n5"]);
  // n5's hypervisor has GPUs (libvirt's test driver with node devices): the only node a GPU request can go to.
  const n5 = cluster.agents[4]!;
  await n5.kill("SIGTERM");
  n5.spawn(["--hypervisor-uri", await gpuDriverUri(cluster.root)]);
  await n5.waitReady();
  await writeFile(path.join(cluster.root, "kernel"), randomBytes(4096));
  const r = await cluster.agents[0]!.cli(["image", "import", "tiny", "--kernel", path.join(cluster.root, "kernel"), "--cmdline", "console=ttyS0"]);
  assert.equal(r.code, 0, r.stderr);
});
after(async () => cluster?.stop());

async function agreed(agents: AgentProcess[], notId?: string): Promise<LeaderDoc> {
  return waitFor("the nodes agree on one leader with 3 voters", async () => {
    const docs = await Promise.all(agents.map(leaderOf));
    const d = docs[0]!;
    if (!d.leader || d.leader.id === notId || !docs.every((x) => x.leader?.id === d.leader!.id && x.term === d.term)) return undefined;
    return d.voters.length === 3 ? d : undefined;
  }, 40_000, 250);
}

test("five nodes, three voters; spread puts five VMs on five nodes", async () => {
  const d = await agreed(cluster.agents);
  assert.equal(d.voters.length, 3, "scheduler.voters caps the voter set");
  // Each node's own role: one leader, two followers, two non-voters (observers) that learned the leader.
  const roles = await waitFor("one leader, two followers, two observers", async () => {
    const docs = await Promise.all(cluster.agents.map(leaderOf));
    const rs = docs.map((x) => x.role).sort().join(",");
    return rs === "follower,follower,leader,observer,observer" && docs.every((x) => x.leader?.id === d.leader!.id) ? rs : undefined;
  }, 20_000, 250);
  assert.ok(roles);
  const nodes: string[] = [];
  for (let i = 0; i < 5; i++) {
    const r = await create(cluster.agents[i % 5]!, `s-${i}`);
    assert.equal(r.code, 0, r.stderr);
    nodes.push((JSON.parse(r.stdout) as VmDoc).node);
  }
  assert.deepEqual([...nodes].sort(), ["n1", "n2", "n3", "n4", "n5"], "spread: one VM per node");
  for (let i = 0; i < 5; i++) assert.equal((await cluster.agents[0]!.cli(["vm", "delete", `s-${i}`], 60_000)).code, 0);
});

test("a GPU request lands on the only node with that device; a device no node has is NOT_FOUND", async () => {
  const from = cluster.agents[0]!;
  let r = await from.cli(["vm", "create", "gpu-1", "--image", "tiny", "--vcpus", "1", "--ram", "64", "--disk", "1", "--network", "none", "--gpu", "passthrough:GPU-0", "--json"], 60_000);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as VmDoc).node, "n5");
  // Taken now: a second VM asking for the same device has nowhere to go.
  r = await from.cli(["vm", "create", "gpu-2", "--image", "tiny", "--vcpus", "1", "--ram", "64", "--disk", "1", "--network", "none", "--gpu", "passthrough:GPU-0"], 60_000);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /n5: .*GPU/i);
  r = await from.cli(["vm", "create", "gpu-3", "--image", "tiny", "--vcpus", "1", "--ram", "64", "--disk", "1", "--network", "none", "--gpu", "passthrough:GPU-9"], 60_000);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /no up node has that GPU/);
  assert.equal((await from.cli(["vm", "delete", "gpu-1"], 60_000)).code, 0);
});

test("SIGKILL the leader: a new one leads and a create succeeds; the old one comes back as a follower", async () => {
  const before = await agreed(cluster.agents);
  const old = cluster.agents.find((a) => a.name === before.leader!.name)!;
  const rest = cluster.agents.filter((a) => a !== old);
  await old.kill("SIGKILL");
  const t0 = Date.now();
  const r = await create(rest[0]!, "after-kill");
  const took = Date.now() - t0;
  assert.equal(r.code, 0, r.stderr);
  assert.notEqual((JSON.parse(r.stdout) as VmDoc).node, old.name);
  console.log(`create after the leader's SIGKILL answered in ${took} ms (CLI start included)`);
  const after = await agreed(rest, before.leader!.id);
  assert.ok(after.term > before.term);
  assert.ok(after.voters.some((v) => v.id === before.leader!.id), "a voter that is merely down keeps its seat");
  await old.start();
  await waitFor("the old leader follows", async () => {
    const d = await leaderOf(old);
    return d.role === "follower" && d.leader?.id === after.leader!.id;
  }, 30_000, 250);
  assert.equal((await rest[1]!.cli(["vm", "delete", "after-kill"], 60_000)).code, 0);
});

test("node remove takes a voter's seat; the leader gives it to another live node", async () => {
  const d = await agreed(cluster.agents);
  const victimId = d.voters.find((v) => v.id !== d.leader!.id)!.id;
  const victim = cluster.agents.find((a) => d.voters.some((v) => v.id === victimId && v.name === a.name))!;
  const rest = cluster.agents.filter((a) => a !== victim);
  await victim.kill("SIGTERM");
  const r = await rest[0]!.cli(["node", "remove", victim.name], 30_000);
  assert.equal(r.code, 0, r.stderr);
  const now = await waitFor("three voters without the removed node", async () => {
    const x = await leaderOf(rest[0]!);
    return x.voters.length === 3 && !x.voters.some((v) => v.id === victimId) && x.voters.every((v) => v.state !== "unreachable") ? x : undefined;
  }, 30_000, 250);
  assert.ok(now.voters.every((v) => rest.some((a) => a.name === v.name)));
});
