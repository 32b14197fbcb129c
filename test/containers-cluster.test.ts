/**
 * Containers across three real agents in production mode (cluster PKI, mTLS
 * between nodes, root-owned 0750 data dirs, the operator on the local
 * socket), on this machine's real podman (test/setup-podman.sh): an image
 * imported once into the object store and loaded by each node on first use,
 * containers placed by the scheduler leader and driven from any node
 * (routed to their node), names unique across VMs and containers, a host
 * port taken on one node making the leader pick another, port mapping
 * reached over HTTP, exec exit codes through a node that does not run the
 * container, a GPU request refused on GPU-less nodes, and deletes that
 * leave nothing in the engine.
 *
 * Three agents share one podman here, so each binds its containers' ports on
 * its own address (container.portAddress: bind), as separate hosts would.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { startCluster, waitFor, type AgentProcess, type Cluster } from "./harness.js";
import { S3_ENV, waitRing } from "./objectstore-util.js";
import { buildBusyboxImage, podmanEngineUri } from "./podman.js";

let cluster: Cluster;
let uri = "";
const TAG = "localhost/thoc-ctcluster-bb:1";
interface CtDoc { name: string; node: string; status: string; ports: { containerPort: number; hostPort: number; hostIp?: string }[]; detail?: string; id?: string }

const json = async <T>(a: AgentProcess, args: string[]): Promise<T> => {
  const r = await a.cli([...args, "--json"], 120_000);
  assert.equal(r.code, 0, `${args.join(" ")} on ${a.name}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
};
const hostOf = (a: AgentProcess) => new URL(a.httpUrl).hostname;
/** The engine's own view: containers this test's agents made (labelled by the container subsystem). */
const engineNames = () => execFileSync("podman", ["--url", uri, "ps", "-a", "--filter", "label=thoc.managed", "--format", "{{.Names}}"], { encoding: "utf8" }).split("\n").filter(Boolean);

before(async () => {
  uri = await podmanEngineUri();
  cluster = await startCluster(3, { dev: false, env: { ...S3_ENV, THOC_CONTAINER_RUNTIME_URI: uri, THOC_CONTAINER_ENABLED: "on", THOC_CONTAINER_PORT_ADDRESS: "bind" } });
  await waitRing(cluster.agents, ["n1", "n2", "n3"]);
  const archive = await buildBusyboxImage(TAG);
  const r = await cluster.agents[0]!.cli(["ct", "image", "import", "bb", archive], 120_000);
  assert.equal(r.code, 0, r.stderr);
});
after(async () => {
  // Nothing of this test left in the shared engine, whatever failed.
  for (const a of cluster?.agents ?? []) await a.cli(["ct", "list", "--json"]).then(async (r) => {
    if (r.code !== 0) return;
    for (const c of JSON.parse(r.stdout) as CtDoc[]) await a.cli(["ct", "delete", c.name]);
  }).catch(() => {});
  await cluster?.stop();
});

test("ct create through a follower: placed by the leader, port mapping reached over HTTP, listed and driven from every node", async () => {
  const [n1, n2, n3] = cluster.agents as [AgentProcess, AgentProcess, AgentProcess];
  // Pinned to n3 so the port binds on n3's address; the create goes through n2.
  const r = await n2.cli(["ct", "create", "ccweb", "--image", "bb", "--node", "n3", "--port", "18080:80", "--env", "GREETING=hi there", "--json", "--", "sh", "-c", "mkdir -p /www && exec httpd -f -p 80 -h /www"], 120_000);
  assert.equal(r.code, 0, r.stderr);
  const made = JSON.parse(r.stdout) as CtDoc;
  assert.equal(made.node, "n3");
  assert.equal(made.status, "running");
  for (const a of cluster.agents) {
    const list = await waitFor(`${a.name} lists ccweb`, async () => (await json<CtDoc[]>(a, ["ct", "list"])).find((c) => c.name === "ccweb"));
    assert.equal(list.node, "n3");
  }
  // exec through n1 (routed to n3): write the page, read the env, exit codes come back.
  let x = await n1.cli(["ct", "exec", "ccweb", "--", "sh", "-c", "mkdir -p /www && echo \"$GREETING\" > /www/index.html"], 60_000);
  assert.equal(x.code, 0, x.stderr);
  x = await n1.cli(["ct", "exec", "ccweb", "--", "sh", "-c", "exit 7"], 60_000);
  assert.equal(x.code, 7, `exit code through a routing node: ${x.stderr}`);
  const body = await waitFor("httpd answers on n3's address", async () => {
    const res = await fetch(`http://${hostOf(n3)}:18080/`).catch(() => undefined);
    return res?.ok ? res.text() : undefined;
  });
  assert.equal(body.trim(), "hi there");
  // Stop and start from n2; the page is in the container's own filesystem and survives.
  let s = await json<CtDoc>(n2, ["ct", "stop", "ccweb", "--timeout-ms", "1000"]);
  assert.match(s.status, /stopped|exited/);
  s = await json<CtDoc>(n1, ["ct", "start", "ccweb"]);
  assert.equal(s.status, "running");
  assert.equal((await waitFor("httpd answers again", async () => (await fetch(`http://${hostOf(n3)}:18080/`).catch(() => undefined))?.text())).trim(), "hi there");
});

test("names are unique across VMs and containers in the cluster", async () => {
  const n1 = cluster.agents[0]!;
  const r = await n1.cli(["ct", "create", "ccweb", "--image", "bb", "--", "sleep", "600"], 60_000);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /ccweb.*already exists|already exists.*ccweb/i);
  await writeFile(path.join(cluster.root, "kernel"), randomBytes(4096));
  assert.equal((await n1.cli(["image", "import", "tiny", "--kernel", path.join(cluster.root, "kernel"), "--cmdline", "console=ttyS0"])).code, 0);
  const v = await n1.cli(["vm", "create", "ccweb", "--image", "tiny", "--vcpus", "1", "--ram", "64", "--disk", "1", "--network", "none"], 60_000);
  assert.notEqual(v.code, 0, "a VM may not take a container's name");
  assert.match(v.stderr, /already exists|is a container/i);
});

test("a host port taken on a node: the leader places the container on another node", async () => {
  const [n1, n2, n3] = cluster.agents as [AgentProcess, AgentProcess, AgentProcess];
  // ccweb holds 18080 on n3. Two more containers asking for 18080, unpinned: neither may land on n3.
  const names = ["ccp1", "ccp2"];
  for (const name of names) {
    const r = await n1.cli(["ct", "create", name, "--image", "bb", "--port", "18080:80", "--json", "--", "sleep", "600"], 120_000);
    assert.equal(r.code, 0, r.stderr);
  }
  const docs = await Promise.all(names.map((n) => json<CtDoc>(n2, ["ct", "show", n])));
  const nodes = docs.map((d) => d.node);
  assert.ok(!nodes.includes("n3"), `placed on ${nodes.join(", ")}: n3's 18080 is taken`);
  assert.notEqual(nodes[0], nodes[1], "two containers binding 18080 on one node");
  // A third has nowhere to go: every node binds 18080 already.
  const r = await n3.cli(["ct", "create", "ccp3", "--image", "bb", "--port", "18080:80", "--", "sleep", "600"], 120_000);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /18080/);
  assert.ok(!engineNames().includes("thoc-ccp3"), "nothing left in the engine");
  for (const name of names) assert.equal((await n3.cli(["ct", "delete", name])).code, 0);
});

test("a GPU request on GPU-less nodes is refused with a clear error, nothing created", async () => {
  const r = await cluster.agents[1]!.cli(["ct", "create", "ccg1", "--image", "bb", "--gpu", "GPU-0", "--", "sleep", "600"], 60_000);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /GPU/);
  assert.ok(!engineNames().includes("thoc-ccg1"));
  const list = await json<CtDoc[]>(cluster.agents[0]!, ["ct", "list"]);
  assert.ok(!list.some((c) => c.name === "ccg1"));
});

test("ct delete from any node removes the container from its node's engine", async () => {
  const n1 = cluster.agents[0]!;
  assert.ok(engineNames().includes("thoc-ccweb"));
  const r = await n1.cli(["ct", "delete", "ccweb"], 60_000);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(!engineNames().includes("thoc-ccweb"), "the engine no longer has it");
  for (const a of cluster.agents) await waitFor(`${a.name} no longer lists ccweb`, async () => !(await json<CtDoc[]>(a, ["ct", "list"])).some((c) => c.name === "ccweb"));
});
