/**
 * VMs survive a host crash (issue 17 item 5), on a real libvirtd
 * (qemu:///system, QEMU TCG) with a production agent (no --dev, its config
 * file and cluster PKI): three VMs — one default, one --no-autostart, one
 * stopped with `vm stop` — then the agent is SIGKILLed and every guest's QEMU
 * is killed under libvirt, as when the host loses power. The agent started
 * again boots the default one back to its serial marker; the other two stay
 * shut off, and `vm show` says why.
 *
 * Needs libvirtd and virtlogd running: `bash test/boot/setup-libvirt.sh`.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFile, rm } from "node:fs/promises";
import path from "node:path";
import { AgentProcess, loopbackBlock, waitFor } from "../harness.js";
import { buildInitramfs, hostKernel, MARKER } from "./initramfs.js";
import { checkLibvirtd, lockLibvirtd, systemRoot, URI, virsh } from "./libvirtd.js";

const auto = `as${process.pid}`, noauto = `an${process.pid}`, userStopped = `au${process.pid}`;
const names = [auto, noauto, userStopped];
let a: AgentProcess | undefined;
let root = "";
let unlock: (() => Promise<void>) | undefined;

before(async () => {
  unlock = await lockLibvirtd();
  checkLibvirtd();
});
after(async () => {
  for (const n of names) {
    try { virsh("destroy", `thoc-${n}`); } catch { /* not running */ }
    try { virsh("undefine", `thoc-${n}`, "--snapshots-metadata"); } catch { /* gone */ }
  }
  await a?.kill("SIGKILL");
  if (root && !process.env.THOC_TEST_KEEP) await rm(root, { recursive: true, force: true });
  await unlock?.();
});

const domstate = (n: string) => virsh("domstate", `thoc-${n}`).trim();
/** Boots of the guest so far: its serial log (virtlogd appends across boots) read from the data dir, agent or not. */
const boots = async (n: string) => ((await readFile(path.join(a!.dataDir, "vms", n, "serial.log"), "latin1").catch(() => "")).match(new RegExp(`${MARKER} init`, "g")) ?? []).length;
interface Shown { status: string; autostart?: boolean; desiredState?: string; autostartError?: string }
const show = async (n: string): Promise<Shown> => {
  const r = await a!.cli(["vm", "show", n, "--json"]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Shown;
};

test("after the agent and every guest are killed, the agent's start boots the autostart VM again; --no-autostart and a user's stop stay off", { timeout: 300_000 }, async (t) => {
  root = await systemRoot("thoc-autostart-");
  a = new AgentProcess("n1", `${loopbackBlock()}.2`, path.join(root, "thoc"), { dev: false, config: { hypervisorUri: URI, limits: { loadFactor: 2 } } });
  const tStart = Date.now();
  await a.start(60_000);
  t.diagnostic(`agent ready in ${Date.now() - tStart} ms`);
  const initrd = await buildInitramfs(root);
  let r = await a.cli(["image", "import", "busybox", "--kernel", hostKernel(), "--initrd", initrd, "--cmdline", "console=ttyS0 quiet panic=-1"]);
  assert.equal(r.code, 0, r.stderr);
  const create = async (n: string, ...extra: string[]) => {
    const c = await a!.cli(["vm", "create", n, "--image", "busybox", "--vcpus", "1", "--ram", "128", "--disk", "1", "--network", "none", ...extra], 120_000);
    assert.equal(c.code, 0, c.stderr);
  };
  await create(auto);
  await create(noauto, "--no-autostart");
  await create(userStopped);
  r = await a.cli(["vm", "stop", userStopped, "--force"], 60_000);
  assert.equal(r.code, 0, r.stderr);
  const shown = await show(auto);
  assert.deepEqual([shown.status, shown.autostart, shown.desiredState], ["running", true, "running"]);
  assert.equal((await show(noauto)).autostart, false, "vm show says --no-autostart");
  assert.equal((await show(userStopped)).desiredState, "stopped");

  // The host goes down: the agent first (no chance to notice), then every guest's QEMU under libvirt.
  await a.kill("SIGKILL");
  for (const n of [auto, noauto]) {
    const pid = Number(execFileSync("sh", ["-c", `pgrep -f 'guest=thoc-${n},' | head -1`], { encoding: "utf8" }).trim());
    assert.ok(pid > 0, `the QEMU of ${n} runs`);
    process.kill(pid, "SIGKILL");
  }
  for (const n of names) await waitFor(`${n} shut off in libvirt`, async () => /shut off/.test(domstate(n)), 30_000, 200);
  const before = await boots(auto);
  const t0 = Date.now();
  await a.start(60_000);
  t.diagnostic(`agent ready again in ${Date.now() - t0} ms`);

  await waitFor("the autostart VM running again", async () => (await show(auto)).status === "running", 60_000, 250);
  t.diagnostic(`running ${Date.now() - t0} ms after the agent's start`);
  assert.match(domstate(auto), /running/);
  await waitFor("the autostart VM booted to its marker again", async () => (await boots(auto)) > before, 120_000, 500);
  t.diagnostic(`booted to the marker ${Date.now() - t0} ms after the agent's start`);
  assert.ok(a.logs().some((l) => l.msg === "autostart: VM started" && l.vm === auto), "a log line for the start");

  // The pass is over (it had one VM to start): the others were never started.
  for (const n of [noauto, userStopped]) {
    assert.match(domstate(n), /shut off/, n);
    assert.equal((await show(n)).status, "stopped", n);
  }
  assert.equal((await show(noauto)).autostart, false);
  assert.equal((await show(userStopped)).desiredState, "stopped");
  assert.equal((await show(auto)).autostartError, undefined);

  for (const n of names) {
    r = await a.cli(["vm", "delete", n], 60_000);
    assert.equal(r.code, 0, r.stderr);
  }
  await a.kill("SIGTERM");
});
