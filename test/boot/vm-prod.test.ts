/**
 * The production path on a real libvirtd: a non-`--dev` agent started the way
 * systemd/thoc-node.service starts it — its config file (the stand-in for
 * /etc/thoc/node.yaml) with a cluster key of its own, a data dir made 0750
 * root:root beforehand (as install.sh and StateDirectory= did before the
 * layout in docs/vms.md), qemu:///system, vm.domainType left at its default,
 * auto — boots the test guest to its serial marker, then stops and deletes it.
 *
 * The test does not open the data dir up: the agent makes it searchable by
 * QEMU's group and nobody else (vm/access.ts), and QEMU still cannot list it
 * or read the store. Where the agent cannot make it work (a parent QEMU
 * cannot search, vm.domainType kvm without KVM) it refuses to start, exit 2,
 * naming the fix.
 *
 * Needs libvirtd and virtlogd running: `bash test/boot/setup-libvirt.sh`.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdir, readdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import { parseDacLabel } from "../../hypervisor/index.js";
import { AgentProcess, loopbackBlock, waitFor } from "../harness.js";
import { buildInitramfs, hostKernel, MARKER } from "./initramfs.js";
import { checkLibvirtd, lockLibvirtd, systemRoot, URI, virsh } from "./libvirtd.js";

const name = `prod${process.pid}`;
const agents: AgentProcess[] = [];
const roots: string[] = [];
let unlock: (() => Promise<void>) | undefined;
/** QEMU's uid and gid, as libvirt reports them (qemu.conf user/group: libvirt-qemu on Debian). */
let qemu: { uid: number; gid: number };
/** /dev/kvm is present and usable here: auto would pick kvm, and the refusal of an explicit kvm cannot be shown. */
let kvm = false;

before(async () => {
  unlock = await lockLibvirtd();
  checkLibvirtd();
  qemu = parseDacLabel(virsh("capabilities")).qemu!;
  assert.ok(qemu && qemu.uid !== 0, "libvirt runs QEMU as a user of its own (DAC label)");
  try { virsh("domcapabilities", "--arch", "x86_64", "--virttype", "kvm"); kvm = true; } catch { /* no KVM: the case this test is for */ }
});
after(async () => {
  try { virsh("destroy", `thoc-${name}`); } catch { /* not running */ }
  try { virsh("undefine", `thoc-${name}`, "--snapshots-metadata"); } catch { /* gone */ }
  for (const a of agents) await a.kill("SIGKILL");
  if (!process.env.THOC_TEST_KEEP) for (const r of roots) await rm(r, { recursive: true, force: true });
  await unlock?.();
});

/** A production agent (no --dev) on qemu:///system, its data dir at root/dataDir in a fresh root QEMU can search, as /var/lib. */
async function prodAgent(config: Record<string, unknown> = {}, opts: { pki?: false; dataDir?: string } = {}): Promise<AgentProcess> {
  const root = await systemRoot("thoc-prod-");
  roots.push(root);
  const a = new AgentProcess("n1", `${loopbackBlock()}.2`, path.join(root, opts.dataDir ?? "thoc"), {
    dev: false, config: { hypervisorUri: URI, ...config }, ...(opts.pki === false ? { pki: false as const } : {}),
  });
  agents.push(a);
  return a;
}

/** Runs cmd as QEMU's uid:gid; true when it succeeds. */
const asQemu = (...cmd: string[]) => spawnSync(cmd[0]!, cmd.slice(1), { uid: qemu.uid, gid: qemu.gid, stdio: "ignore" }).status === 0;

test("a production agent on qemu:///system boots a guest from a 0750 root-owned data dir it makes searchable by QEMU alone", { timeout: 240_000 }, async (t) => {
  const a = await prodAgent();
  // As install.sh made /var/lib/thoc before: 0750 root:root, which QEMU cannot search.
  await mkdir(a.dataDir, { mode: 0o750 });
  let st = await stat(a.dataDir);
  assert.equal(st.mode & 0o777, 0o750);
  assert.equal(st.uid, 0);
  assert.ok(!asQemu("test", "-x", a.dataDir), "QEMU cannot search the data dir yet");
  await a.start(60_000);

  // The data dir: QEMU's group may search it, not list it; nobody else may do anything; the store stays root's.
  st = await stat(a.dataDir);
  assert.equal(st.mode & 0o777, 0o710, "data dir 0710");
  assert.equal(st.uid, 0);
  assert.equal(st.gid, qemu.gid, "group: QEMU's");
  assert.ok(asQemu("test", "-x", a.dataDir), "QEMU can search the data dir");
  assert.ok(!asQemu("ls", a.dataDir), "QEMU cannot list the data dir");
  for (const d of ["meta", "pki"]) {
    assert.equal((await stat(path.join(a.dataDir, d))).mode & 0o777, 0o700, `${d}/ stays 0700`);
    assert.ok(!asQemu("ls", path.join(a.dataDir, d)), `QEMU cannot read ${d}/`);
  }
  const vms = await stat(path.join(a.dataDir, "vms"));
  assert.deepEqual([vms.mode & 0o777, vms.uid, vms.gid], [0o710, 0, qemu.gid], "vms/ 0710 root:<QEMU's group>");

  // vm.domainType auto: KVM or not, decided from libvirt's domain capabilities, said once in the log and in status.
  const want = kvm ? "kvm" : "qemu";
  let r = await a.cli(["status", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const detail = (JSON.parse(r.stdout) as { subsystems: Record<string, { status: string; detail?: string }> }).subsystems.vm!;
  assert.equal(detail.status, "up");
  assert.match(detail.detail ?? "", new RegExp(`domain type ${want}`));
  if (!kvm) {
    assert.match(detail.detail ?? "", /no KVM on this host \(.*kvm.*\): VMs run under TCG emulation/);
    r = await a.cli(["status"]);
    assert.match(r.stdout, /vm +up \(qemu:\/\/\/system, domain type qemu: no KVM on this host/);
    const warnings = a.logs().filter((l) => l.level === "warn" && /KVM is not available/.test(String(l.msg)));
    assert.equal(warnings.length, 1, "one warning at start");
  }

  const initrd = await buildInitramfs(path.dirname(a.dataDir));
  r = await a.cli(["image", "import", "busybox", "--kernel", hostKernel(), "--initrd", initrd, "--cmdline", "console=ttyS0 quiet panic=-1"]);
  assert.equal(r.code, 0, r.stderr);
  const kernel = await stat(path.join(a.dataDir, "images", "busybox", "kernel"));
  assert.deepEqual([kernel.mode & 0o777, kernel.gid], [0o640, qemu.gid], "image files: 0640 root:<QEMU's group>");
  assert.equal((await stat(path.join(a.dataDir, "images", "busybox", "image.json"))).mode & 0o777, 0o600, "the image record stays the agent's");

  const t0 = Date.now();
  r = await a.cli(["vm", "create", name, "--image", "busybox", "--vcpus", "1", "--ram", "256", "--disk", "1", "--network", "none", "--json"], 120_000);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { status: string }).status, "running");
  assert.match(virsh("dumpxml", `thoc-${name}`), new RegExp(`<domain type='${want}'`));
  await waitFor("the boot marker in vm logs", async () => (await a.cli(["vm", "logs", name])).stdout.includes(`${MARKER} 1`), 120_000, 500);
  t.diagnostic(`booted to the marker in ${Date.now() - t0} ms`);

  r = await a.cli(["vm", "stop", name, "--force", "--json"], 60_000);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { status: string }).status, "stopped");
  // libvirt gave the disk back on stop (dynamic_ownership, remember_owner): root:<QEMU's group> again.
  const disk = await stat(path.join(a.dataDir, "vms", name, "disk.qcow2"));
  assert.deepEqual([disk.mode & 0o777, disk.uid, disk.gid], [0o660, 0, qemu.gid], "the overlay after stop");
  r = await a.cli(["vm", "delete", name], 60_000);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(virsh("list", "--all", "--name"), new RegExp(`thoc-${name}\\b`));
  assert.deepEqual(await readdir(path.join(a.dataDir, "vms")), []);
  await a.kill("SIGTERM");
});

test("refused at start, exit 2 naming the fix: a data dir under a parent QEMU cannot search", { timeout: 60_000 }, async () => {
  const a = await prodAgent({}, { pki: false, dataDir: "private/thoc" });
  const parent = path.dirname(a.dataDir);
  await mkdir(parent, { mode: 0o700 });
  await a.launch();
  assert.equal(await a.waitExit(), 2, `${a.exitSignal} ${a.output}`);
  assert.match(a.output, new RegExp(`config: dataDir: QEMU runs as uid ${qemu.uid} gid ${qemu.gid} .* cannot search ${parent} \\(mode 0700, owner 0:0\\), a parent of the data dir .*chmod o\\+x ${parent}`));
  assert.equal((await stat(parent)).mode & 0o777, 0o700, "a parent the agent did not make is never changed");
});

test("refused at start, exit 2 naming vm.domainType: kvm where libvirt says KVM is unavailable", { timeout: 60_000 }, async (t) => {
  if (kvm) { t.skip("this host has KVM"); return; }
  const a = await prodAgent({ vm: { domainType: "kvm" } }, { pki: false });
  await a.launch();
  assert.equal(await a.waitExit(), 2, `${a.exitSignal} ${a.output}`);
  assert.match(a.output, /config: vm\.domainType: kvm, but libvirt says this host cannot run KVM guests \(.*\): set vm\.domainType: auto/);
});
