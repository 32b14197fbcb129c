/**
 * The VM API end to end on a real agent (--dev: libvirt's test:///default),
 * driven by the CLI as an operator would, and by a gRPC client for the status
 * codes of bad requests.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { createClient, credentials } from "../rpc/index.js";
import { VmService } from "../proto/index.js";
import { startCluster, type Cluster, type AgentProcess } from "./harness.js";

let c: Cluster;
let a: AgentProcess;
before(async () => { c = await startCluster(1); a = c.agents[0]!; });
after(() => c.stop());

const json = (s: string) => JSON.parse(s) as Record<string, unknown>;

test("CLI: images, VM lifecycle, snapshots, metrics, GPUs on the dev agent", async () => {
  const qcow = path.join(c.root, "base.qcow2");
  execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", qcow, "1G"]);
  let r = await a.cli(["image", "import", "debian-12", qcow, "--json"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(json(r.stdout).kind, "disk");
  const kern = path.join(c.root, "k");
  await writeFile(kern, Buffer.alloc(8192, 1));
  r = await a.cli(["image", "import", "tiny", "--kernel", kern, "--initrd", kern, "--cmdline", "console=ttyS0"]);
  assert.equal(r.code, 0, r.stderr);
  r = await a.cli(["image", "list", "--json"]);
  assert.deepEqual((JSON.parse(r.stdout) as { name: string }[]).map((i) => i.name), ["debian-12", "tiny"]);

  const key = path.join(c.root, "id.pub");
  await writeFile(key, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE op@laptop\n");
  r = await a.cli(["vm", "create", "web1", "--image", "debian-12", "--vcpus", "1", "--ram", "256", "--disk", "2", "--ssh-key", key, "--ip", "10.0.0.5/24", "--gateway", "10.0.0.1", "--vlan", "100", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const vm = json(r.stdout);
  assert.equal(vm.status, "running");
  assert.deepEqual(vm.network, { mode: "bridge-vlan", ipMode: "static", ipAddress: "10.0.0.5", netmask: "24", gateway: "10.0.0.1", vlanId: 100, bridge: "br0" });
  r = await a.cli(["vm", "list"]);
  assert.match(r.stdout, /web1\s+n1\s+running\s+debian-12/);
  for (const [verb, status] of [["stop", "stopped"], ["start", "running"], ["restart", "running"]] as const) {
    r = await a.cli(["vm", verb, "web1", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(json(r.stdout).status, status, verb);
  }
  r = await a.cli(["vm", "snapshot", "create", "web1", "s1", "--description", "first"]);
  assert.equal(r.code, 0, r.stderr);
  r = await a.cli(["vm", "snapshot", "list", "web1", "--json"]);
  assert.deepEqual((JSON.parse(r.stdout) as { name: string }[]).map((s) => s.name), ["s1"]);
  assert.equal((await a.cli(["vm", "snapshot", "restore", "web1", "s1"])).code, 0);
  assert.equal((await a.cli(["vm", "snapshot", "delete", "web1", "s1"])).code, 0);
  r = await a.cli(["vm", "metrics", "web1", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(json(r.stdout).state, "running");
  r = await a.cli(["vm", "gpus", "--json"]);
  assert.deepEqual(JSON.parse(r.stdout), [], "test:///default has no GPUs");
  // An image in use cannot be deleted.
  r = await a.cli(["image", "delete", "debian-12"]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /is the base of VMs web1: delete them first/);
  // /metrics carries per-VM figures.
  const prom = await (await fetch(`${a.httpUrl}/metrics`)).text();
  assert.match(prom, /thoc_vm_running\{vm="web1"\} 1/);
  assert.match(prom, /thoc_vms 1/);
  // promtool's naming rules hold for the VM metrics.
  const lint = spawnSync("promtool", ["check", "metrics"], { input: prom, encoding: "utf8" });
  assert.equal(lint.error, undefined, "promtool (Debian prometheus) is installed");
  assert.deepEqual((lint.stdout + lint.stderr).split("\n").filter((l) => /thoc_vm/.test(l)), []);
  r = await a.cli(["vm", "delete", "web1"]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await readdir(path.join(a.dataDir, "vms")), []);
  assert.equal((await a.cli(["image", "delete", "debian-12"])).code, 0);
});

test("bad requests: status code, a message that says what to fix, nothing left behind", async () => {
  const client = createClient(VmService, a.clientAddress, { credentials: credentials.createInsecure(), defaultTimeoutMs: 10_000 });
  try {
    const qcow = path.join(c.root, "b.qcow2");
    execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", qcow, "1G"]);
    assert.equal((await a.cli(["image", "import", "img", qcow])).code, 0);
    const ok = { name: "x", image: "img", vcpus: 1, ramMb: 128, diskGb: 2 };
    const cases: [string, Record<string, unknown>, string, RegExp][] = [
      ["0 vCPUs", { ...ok, name: "b1", vcpus: 0 }, "invalid_argument", /a VM needs at least 1/],
      ["RAM over the host", { ...ok, name: "b2", ramMb: 64 * 1024 * 1024 }, "invalid_argument", /larger than any node: the largest node, n1, has \d+ CPUs/],
      ["unknown image", { ...ok, name: "b3", image: "ubuntu-22.04" }, "not_found", /thoc-node image import ubuntu-22.04 FILE/],
      ["static IP without gateway", { ...ok, name: "b4", network: { ipMode: "static", ipAddress: "10.0.0.5", netmask: "255.255.255.0" } }, "invalid_argument", /needs a gateway/],
      ["VLAN 5000", { ...ok, name: "b5", network: { vlanId: 5000 } }, "invalid_argument", /VLAN 5000 is out of range: VLAN ids are 1-4094/],
      ["GPU that does not exist", { ...ok, name: "b6", gpu: { enabled: true, mode: "passthrough", deviceIds: ["GPU-0"] } }, "not_found", /no up node has that GPU \(n1: no GPUs\)/],
    ];
    for (const [what, spec, st, re] of cases) {
      await assert.rejects(client.createVm({ spec }), (e: { code: string; message: string }) => {
        assert.equal(e.code, st, `${what}: ${e.message}`);
        assert.match(e.message, re, what);
        return true;
      });
    }
    await client.createVm({ spec: { ...ok, name: "dup" } });
    await assert.rejects(client.createVm({ spec: { ...ok, name: "dup" } }), (e: { code: string; message: string }) => e.code === "already_exists" && /a VM named dup already exists/.test(e.message));
    await assert.rejects(client.createVm({ spec: { ...ok, name: "big", ramMb: 1024 * 1024 } }), (e: { code: string }) => e.code === "invalid_argument" || e.code === "resource_exhausted");
    const { vms } = await client.listVms({});
    assert.deepEqual(vms.map((v) => v.name), ["dup"], "only the good VM exists");
    assert.deepEqual(await readdir(path.join(a.dataDir, "vms")), ["dup"]);
    // The CLI: one line on stderr, exit 2 for bad input, 1 otherwise.
    let r = await a.cli(["vm", "create", "c1", "--image", "img", "--vcpus", "0"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^thoc-node: vcpus: 0 vCPUs: a VM needs at least 1/);
    assert.equal(r.stderr.trim().split("\n").length, 1);
    r = await a.cli(["vm", "create", "c2", "--image", "nope"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /image nope is not on this node/);
    r = await a.cli(["vm", "create", "c3", "--image", "img", "--vlan", "5000"]);
    assert.equal(r.code, 2);
    r = await a.cli(["vm", "show", "ghost"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no VM named ghost/);
    await client.deleteVm({ name: "dup" });
  } finally {
    client.close();
  }
});

test("agent restart: records persist; domains the test driver forgot are marked missing", async () => {
  assert.equal((await a.cli(["vm", "create", "keep", "--image", "img", "--ram", "128", "--disk", "2"])).code, 0);
  await a.restart("SIGKILL");
  const r = await a.cli(["vm", "show", "keep", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  // test:///default lives inside the agent process: after a restart the domain is gone.
  assert.equal(json(r.stdout).status, "missing");
  assert.equal((await a.cli(["vm", "delete", "keep"])).code, 0);
  assert.deepEqual(JSON.parse((await a.cli(["vm", "list", "--json"])).stdout), []);
});
