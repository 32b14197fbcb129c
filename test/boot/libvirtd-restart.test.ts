/**
 * libvirtd restarts under a running agent (qemu:///system, QEMU TCG): the
 * agent's `vm` subsystem goes degraded while libvirtd is gone and back to up
 * when it returns (the connection's reconnect loop), the domain state is
 * re-synced (a guest that died while libvirtd was away shows as stopped), and
 * lifecycle events keep flowing afterwards (a `virsh destroy` behind the
 * agent's back is seen without any call to the agent).
 *
 * Also here, since it needs libvirtd: a VM whose start fails in QEMU is
 * rolled back (no domain, no files, no record) with an error that says why.
 *
 * Needs libvirtd and virtlogd: `bash test/boot/setup-libvirt.sh`; takes the
 * libvirtd lock so it never overlaps the boot test.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmod, readdir } from "node:fs/promises";
import path from "node:path";
import { waitFor, type AgentProcess, type Cluster } from "../harness.js";
import { buildInitramfs, hostKernel } from "./initramfs.js";
import { startSystemAgent, virsh } from "./libvirtd.js";

const pids = (cmd: string) => execFileSync("sh", ["-c", `ps -C ${cmd} -o pid=,stat= | awk '$2 !~ /^Z/ {print $1}'`], { encoding: "utf8" }).split(/\s+/).filter(Boolean).map(Number);

let c: Cluster;
let a: AgentProcess;
let release: ((domains: string[]) => Promise<void>) | undefined;
const name = `lvr${process.pid}`;
const domain = `thoc-${name}`;

before(async () => {
  ({ c, a, release } = await startSystemAgent());
});
after(async () => {
  // Whatever happened, leave libvirtd running for the next test file.
  if (pids("libvirtd").length === 0) execFileSync("bash", ["test/boot/setup-libvirt.sh"], { stdio: "ignore" });
  await release?.([domain, `${domain}-x`]);
});

const vmHealth = async () => {
  const r = await a.cli(["status", "--json"]);
  const s = JSON.parse(r.stdout) as { subsystems: Record<string, { status: string; detail?: string }> };
  return s.subsystems.vm!;
};
/** From `vm list`, which reads the agent's records (kept by lifecycle events and reconcile); `vm show` asks libvirt itself. */
const vmStatus = async () => (JSON.parse((await a.cli(["vm", "list", "--json"])).stdout) as { name: string; status: string }[]).find((v) => v.name === name)?.status;

test("libvirtd killed and restarted: degraded -> up, state re-synced, events flow again", { timeout: 240_000 }, async () => {
  const initrd = await buildInitramfs(c.root);
  let r = await a.cli(["image", "import", "busybox", "--kernel", hostKernel(), "--initrd", initrd, "--cmdline", "console=ttyS0 quiet panic=-1"]);
  assert.equal(r.code, 0, r.stderr);
  r = await a.cli(["vm", "create", name, "--image", "busybox", "--vcpus", "1", "--ram", "128", "--disk", "1", "--network", "none", "--json"], 120_000);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((await vmHealth()).status, "up");

  // libvirtd dies; its QEMU keeps running, and then dies too while libvirtd is away.
  const qemu = Number(execFileSync("sh", ["-c", `pgrep -f 'guest=${domain}' | head -1`], { encoding: "utf8" }).trim());
  assert.ok(qemu > 0, "the guest's QEMU process is running");
  for (const p of pids("libvirtd")) process.kill(p, "SIGKILL");
  const down = await waitFor("vm health degraded", async () => { const h = await vmHealth(); return h.status === "degraded" ? h : undefined; }, 30_000, 250);
  assert.match(down!.detail ?? "", /unreachable/);
  process.kill(qemu, "SIGKILL");

  execFileSync("bash", ["test/boot/setup-libvirt.sh"], { stdio: "ignore" });
  await waitFor("vm health up again", async () => (await vmHealth()).status === "up", 60_000, 250);
  // Reconciled after the reconnect: the guest that died while libvirtd was away is stopped, not "running".
  await waitFor("the record re-synced to stopped", async () => (await vmStatus()) === "stopped", 30_000, 250);
  assert.match(virsh("domstate", domain), /shut off/);

  // Events flow on the new connection: a start through the agent, then a destroy behind its back.
  r = await a.cli(["vm", "start", name, "--json"], 60_000);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { status: string }).status, "running");
  virsh("destroy", domain);
  await waitFor("the destroy seen through a lifecycle event", async () => (await vmStatus()) === "stopped", 15_000, 200);

  r = await a.cli(["vm", "delete", name], 60_000);
  assert.equal(r.code, 0, r.stderr);
});

test("a VM whose start fails in QEMU is rolled back: no domain, no files, no record", { timeout: 120_000 }, async () => {
  // QEMU runs as libvirt-qemu: with the test's root dir back at 0700 it cannot reach the VM's disk, so
  // the domain defines but does not start (the production failure of a data dir QEMU cannot traverse).
  await chmod(c.root, 0o700);
  try {
    const r = await a.cli(["vm", "create", `${name}-x`, "--image", "busybox", "--vcpus", "1", "--ram", "128", "--disk", "1", "--network", "none"], 120_000);
    assert.notEqual(r.code, 0, "the create fails");
    assert.match(r.stderr, /Permission denied|Cannot access/i, "the error says what QEMU could not do");
    assert.equal(r.stderr.trim().split("\n").length, 1, "one line");
  } finally {
    await chmod(c.root, 0o755);
  }
  assert.doesNotMatch(virsh("list", "--all", "--name"), new RegExp(`${domain}-x\\b`), "no domain left in libvirt");
  const left = (JSON.parse((await a.cli(["vm", "list", "--json"])).stdout) as { name: string }[]).filter((v) => v.name === `${name}-x`);
  assert.deepEqual(left, [], "no record left");
  assert.ok(!(await readdir(path.join(a.dataDir, "vms"))).includes(`${name}-x`), "no files left");
});
