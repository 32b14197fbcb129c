/**
 * The cluster as one computer (issue 14), with real agents: one elected
 * scheduler leader that every node agrees on and whose voter set grows to 3
 * as nodes join; `vm create` through any node placed by the leader, VMs
 * listed, shown and stopped from any node (routed to their node), names
 * unique in the cluster, anti-affinity groups, pinned nodes and their
 * refusals, idempotent creates by request id, concurrent creates from every
 * node that never over-commit one (checked against each node's own
 * records), and the leader SIGKILLed: another leads, creates go on, a VM on
 * the dead node reads "unknown", `vm delete --force` removes it and the node
 * deletes it when it returns, as a follower.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { appendFile, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { startCluster, waitFor, type AgentProcess, type Cluster } from "./harness.js";
import { S3_ENV, waitRing } from "./objectstore-util.js";
import { createClient, credentials } from "../rpc/index.js";
import { VmService } from "../proto/index.js";

let cluster: Cluster;
interface LeaderDoc { leader: { id: string; name: string; grpcAddress: string } | null; term: number; role: string; voters: { id: string; name: string; state: string }[] }
interface VmDoc { name: string; node: string; status: string; uuid: string; vcpus: number; group?: string }

const json = async <T>(a: AgentProcess, args: string[]): Promise<T> => {
  const r = await a.cli([...args, "--json"], 60_000);
  assert.equal(r.code, 0, `${args.join(" ")} on ${a.name}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
};
const leaderOf = (a: AgentProcess) => json<LeaderDoc>(a, ["leader"]);
const create = (a: AgentProcess, name: string, extra: string[] = []) =>
  a.cli(["vm", "create", name, "--image", "tiny", "--vcpus", "1", "--ram", "64", "--disk", "1", "--network", "none", "--json", ...extra], 60_000);

before(async () => {
  // loadFactor 1: each agent offers this machine's CPUs once, so over-commit is easy to provoke below.
  // Production mode (cluster PKI, mutual TLS between nodes, clients on the local socket): routing and
  // forwarding cross nodes under node certificates, as they do on real hosts.
  cluster = await startCluster(3, { dev: false, env: { ...S3_ENV, THOC_LIMITS_LOAD_FACTOR: "1" } });
  await waitRing(cluster.agents, ["n1", "n2", "n3"]);
  await writeFile(path.join(cluster.root, "kernel"), randomBytes(4096));
  const r = await cluster.agents[0]!.cli(["image", "import", "tiny", "--kernel", path.join(cluster.root, "kernel"), "--cmdline", "console=ttyS0"]);
  assert.equal(r.code, 0, r.stderr);
});
after(async () => cluster?.stop());

/** Every agent agrees on one leader with `voters` voters that all answer; returns it. */
async function agreedLeader(agents: AgentProcess[], voters = 3, notId?: string): Promise<LeaderDoc> {
  return waitFor("every node agrees on one leader", async () => {
    const docs = await Promise.all(agents.map(leaderOf));
    const ids = new Set(docs.map((d) => d.leader?.id));
    const d = docs[0]!;
    if (ids.size !== 1 || !d.leader || d.leader.id === notId) return undefined;
    if (d.voters.length !== voters || d.voters.some((v) => v.state === "unreachable")) return undefined;
    assert.equal(docs.filter((x) => x.role === "leader").length, 1, "exactly one node says it leads");
    return d;
  }, 30_000, 250);
}

test("one leader that every node agrees on; the voter set grows from the first node to 3", async () => {
  const d = await agreedLeader(cluster.agents);
  assert.ok(d.term > 0);
  assert.deepEqual(d.voters.map((v) => v.name).sort(), ["n1", "n2", "n3"]);
  const leader = cluster.agents.find((a) => a.name === d.leader!.name)!;
  const metrics = await (await fetch(`${leader.httpUrl}/metrics`)).text();
  assert.match(metrics, /^thoc_scheduler_is_leader 1$/m);
  assert.match(metrics, new RegExp(`^thoc_scheduler_term ${d.term}$`, "m"));
});

test("vm create through any node: placed by the leader, seen and driven from every node, names unique in the cluster", async () => {
  const [n1, n2, n3] = cluster.agents as [AgentProcess, AgentProcess, AgentProcess];
  let r = await create(n2, "web-1");
  assert.equal(r.code, 0, r.stderr);
  const made = JSON.parse(r.stdout) as VmDoc;
  assert.ok(["n1", "n2", "n3"].includes(made.node));
  for (const a of cluster.agents) {
    const list = await waitFor(`${a.name} lists web-1`, async () => (await json<VmDoc[]>(a, ["vm", "list"])).find((v) => v.name === "web-1"));
    assert.equal(list.node, made.node, `${a.name} says web-1 runs on ${made.node}`);
  }
  // Driven from a node that does not run it: routed to its node.
  const other = cluster.agents.find((a) => a.name !== made.node)!;
  assert.equal((await json<VmDoc>(other, ["vm", "stop", "web-1", "--force"])).status, "stopped");
  assert.equal((await json<VmDoc>(other, ["vm", "show", "web-1"])).status, "stopped");
  assert.equal((await json<VmDoc>(other, ["vm", "start", "web-1"])).status, "running");
  const owner = cluster.agents.find((a) => a.name === made.node)!;
  // The VM's node audits the routed stop as the routing node's, for the operator that node served, under one request id.
  const audit = (a: AgentProcess) => readFile(path.join(a.dataDir, "audit.log"), "utf8").then((t) => t.trim().split("\n").map((l) => JSON.parse(l) as { method: string; who: string; target: Record<string, string>; requestId: string; caller: { kind: string } }));
  const there = (await audit(owner)).find((r) => r.method.endsWith("/StopVm") && r.target.name === "web-1");
  assert.ok(there, "the VM's node audited the routed stop");
  assert.equal(there.caller.kind, "node");
  assert.match(there.who, / for local uid 0\b/);
  assert.ok((await audit(other)).some((r) => r.method.endsWith("/StopVm") && r.requestId === there.requestId), "the same request id on the node the operator called");
  // Streams are routed too: the serial log the VM's node holds, read through another node.
  await appendFile(path.join(owner.dataDir, "vms", "web-1", "serial.log"), `console of web-1 on ${made.node}\n`);
  const logs = await other.cli(["vm", "logs", "web-1"], 30_000);
  assert.equal(logs.code, 0, logs.stderr);
  assert.equal(logs.stdout, `console of web-1 on ${made.node}\n`);
  assert.ok("state" in (await json<{ state: string }>(other, ["vm", "metrics", "web-1"])), "metrics of a VM on another node");

  r = await create(n3, "web-1");
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, new RegExp(`already exists on node ${made.node}`));

  r = await create(n1, "pinned", ["--node", "n3"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as VmDoc).node, "n3");
  r = await create(n1, "nowhere", ["--node", "n9"]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /n9/);
  r = await create(n1, "badgroup", ["--group", "Web!"]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /--group/);
  r = await n2.cli(["vm", "list", "--node", "n9"]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /no node n9/);

  for (const name of ["web-1", "pinned"]) assert.equal((await n2.cli(["vm", "delete", name], 60_000)).code, 0);
  await waitFor("the deletes reach every node's table", async () => (await json<VmDoc[]>(n3, ["vm", "list"])).length === 0);
});

test("an anti-affinity group puts its VMs on distinct nodes and is refused when every node has one", async () => {
  const [n1] = cluster.agents as [AgentProcess];
  const nodes: string[] = [];
  for (const i of [1, 2, 3]) {
    const r = await create(n1, `db-${i}`, ["--group", "db"]);
    assert.equal(r.code, 0, r.stderr);
    nodes.push((JSON.parse(r.stdout) as VmDoc).node);
  }
  assert.deepEqual([...nodes].sort(), ["n1", "n2", "n3"]);
  const r = await create(n1, "db-4", ["--group", "db"]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /group|db/);
  for (const i of [1, 2, 3]) assert.equal((await n1.cli(["vm", "delete", `db-${i}`], 60_000)).code, 0);
});

test("vm list through any node shows the guest addresses of VMs on other nodes", async () => {
  const [n1, n2] = [cluster.agents[0]!, cluster.agents[1]!];
  // With a NIC (the default bridge network): a guest without one has no address anywhere.
  const made = await n2.cli(["vm", "create", "addr-1", "--image", "tiny", "--vcpus", "1", "--ram", "64", "--disk", "1", "--node", "n2", "--json"], 60_000);
  assert.equal(made.code, 0, made.stderr);
  try {
    // n2 reads them from its libvirt (the test driver invents a lease); n1 holds only the table entry.
    const there = (await json<{ name: string; ipAddresses: string[] }[]>(n2, ["vm", "list", "--node", "n2"])).find((v) => v.name === "addr-1");
    assert.ok(there && there.ipAddresses.length > 0, `n2 knows addr-1's addresses: ${JSON.stringify(there)}`);
    const here = (await json<{ name: string; node: string; ipAddresses: string[] }[]>(n1, ["vm", "list"])).find((v) => v.name === "addr-1");
    assert.equal(here?.node, "n2");
    assert.deepEqual(here?.ipAddresses, there.ipAddresses, "n1's cluster listing asks n2 for them");
  } finally { await n1.cli(["vm", "delete", "addr-1"], 60_000); }
});

test("a create retried with the same request id makes one VM", async () => {
  const a = cluster.agents[1]!;
  const c = createClient(VmService, a.clientAddress, { credentials: credentials.createInsecure(), defaultTimeoutMs: 60_000 });
  try {
    const req = { spec: { name: "once", image: "tiny", vcpus: 1, ramMb: 64, diskGb: 1, network: { mode: "none" } }, requestId: randomUUID() };
    const [x, y] = await Promise.all([c.createVm(req).catch((e: Error) => e), c.createVm(req).catch((e: Error) => e)]);
    const ok = [x, y].filter((v) => !(v instanceof Error)) as { vm?: { uuid: string } }[];
    assert.ok(ok.length >= 1, `one of the two answers is the VM (${String(x)} / ${String(y)})`);
    const again = await c.createVm(req);
    assert.equal(again.vm?.uuid, ok[0]!.vm?.uuid, "a retry answers with the VM the first try created");
    const all = (await c.listVms({})).vms.filter((v) => v.name === "once");
    assert.equal(all.length, 1);
    await c.deleteVm({ name: "once" });
  } finally { c.close(); }
});

test("concurrent creates from every node never over-commit a node", async () => {
  const cpus = (await json<{ capacity: { cpus: number } }>(cluster.agents[0]!, ["status"])).capacity.cpus;
  const per = 3;
  const results = await Promise.all(cluster.agents.flatMap((a) => Array.from({ length: per }, (_, i) => create(a, `burst-${a.name}-${i}`))));
  const made = results.filter((r) => r.code === 0).length;
  const refused = results.filter((r) => r.code !== 0);
  for (const r of refused) assert.match(r.stderr, /RESOURCE_EXHAUSTED|no node|vCPU|vcpus/i, r.stderr);
  // Each node's own records (ListVms local), not the table: what the node actually holds.
  let total = 0;
  for (const a of cluster.agents) {
    const c = createClient(VmService, a.clientAddress, { credentials: credentials.createInsecure(), defaultTimeoutMs: 10_000 });
    try {
      const mine = (await c.listVms({ local: true })).vms;
      const vcpus = mine.reduce((n, v) => n + (v.spec?.vcpus ?? 0), 0);
      assert.ok(vcpus <= cpus, `${a.name} holds ${vcpus} vCPUs of ${cpus}`);
      total += mine.length;
      for (const v of mine) await c.deleteVm({ name: v.name });
    } finally { c.close(); }
  }
  assert.equal(total, made, "every VM reported created exists exactly once");
  assert.equal(made, Math.min(cpus * 3, per * 3), `${made} created, ${refused.length} refused`);
});

test("the leader SIGKILLed: another leads, creates go on, its VM reads unknown and --force deletes it; it returns as a follower and cleans up", async () => {
  const before = await agreedLeader(cluster.agents);
  const old = cluster.agents.find((a) => a.name === before.leader!.name)!;
  const rest = cluster.agents.filter((a) => a !== old);
  let r = await create(rest[0]!, "on-old", ["--node", old.name]);
  assert.equal(r.code, 0, r.stderr);
  await old.kill("SIGKILL");
  const after = await waitFor("a new leader among the survivors", async () => {
    const docs = await Promise.all(rest.map(leaderOf));
    const d = docs[0]!;
    return d.leader && d.leader.id !== before.leader!.id && docs.every((x) => x.leader?.id === d.leader!.id) ? d : undefined;
  }, 30_000, 200);
  assert.ok(after.term > before.term, "a higher term");
  r = await create(rest[1]!, "after-failover");
  assert.equal(r.code, 0, r.stderr);
  assert.notEqual((JSON.parse(r.stdout) as VmDoc).node, old.name);

  const seen = await waitFor("on-old reads unknown", async () => {
    const v = (await json<VmDoc[]>(rest[0]!, ["vm", "list"])).find((x) => x.name === "on-old");
    return v?.status === "unknown" ? v : undefined;
  }, 30_000, 250);
  assert.equal(seen.node, old.name);
  r = await rest[0]!.cli(["vm", "delete", "on-old"]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /down/);
  r = await rest[1]!.cli(["vm", "delete", "on-old", "--force"]);
  assert.equal(r.code, 0, r.stderr);

  await old.start();
  await waitFor("the old leader follows", async () => {
    const d = await leaderOf(old);
    return d.role === "follower" && d.leader?.id === after.leader!.id;
  }, 30_000, 250);
  const c = createClient(VmService, old.clientAddress, { credentials: credentials.createInsecure(), defaultTimeoutMs: 10_000 });
  try {
    await waitFor("the returned node deleted the VM removed while it was down", async () => !(await c.listVms({ local: true })).vms.some((v) => v.name === "on-old"), 30_000, 250);
  } finally { c.close(); }
  assert.equal((await rest[0]!.cli(["vm", "delete", "after-failover"], 60_000)).code, 0);
});
