/**
 * The boot test: a real agent on qemu:///system (libvirtd + QEMU TCG,
 * vm.domainType qemu), driven by the CLI, boots a Debian kernel with a busybox
 * initramfs built here that prints a marker on the serial console. `vm logs`
 * shows it, `vm console` receives it (and what is typed), `vm logs --follow`
 * streams what the guest prints after it started and ends (exit 0) when the
 * VM is deleted, the guest runs on after a snapshot restore, and stop +
 * delete leave nothing in libvirt or on disk.
 *
 * Needs libvirtd and virtlogd running: `bash test/boot/setup-libvirt.sh`.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { readdir } from "node:fs/promises";
import net from "node:net";
import { decodeFrames } from "../../vm/index.js";
import path from "node:path";
import { CLI, REPO_ROOT, waitFor, type AgentProcess, type Cluster } from "../harness.js";
import { buildInitramfs, hostKernel, MARKER } from "./initramfs.js";
import { startSystemAgent, virsh } from "./libvirtd.js";

const kernel = hostKernel;

/** Opens a WebSocket (RFC 6455, by hand: Node 20 has no client) and returns the first binary message. */
function wsFirstMessage(url: string): Promise<Buffer> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(u.port), u.hostname, () => {
      s.write(`GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n`);
    });
    let buf = Buffer.alloc(0);
    const t = setTimeout(() => { s.destroy(); reject(new Error("no WebSocket message in 10 s")); }, 10_000);
    s.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = buf.subarray(0, end).toString();
      if (!/^HTTP\/1.1 101/.test(head)) { clearTimeout(t); s.destroy(); reject(new Error(head.split("\r\n")[0])); return; }
      const { frames } = decodeFrames(buf.subarray(end + 4));
      if (frames.length) { clearTimeout(t); s.destroy(); resolve(frames[0]!.payload); }
    });
    s.on("error", (e) => { clearTimeout(t); reject(e); });
  });
}

interface Follower { out: string; err: string; exit: Promise<number | null>; kill(): void }

/** `vm logs --follow` running in the background, its output as it arrives. */
function follow(agent: AgentProcess, vm: string): Follower {
  const p = spawn(process.execPath, [CLI, ...agent.cliTarget, "vm", "logs", vm, "--follow", "--tail", "1"], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
  const f: Follower = { out: "", err: "", exit: once(p, "exit").then(([code]) => code as number | null), kill: () => { if (p.exitCode === null) p.kill("SIGKILL"); } };
  p.stdout!.on("data", (b: Buffer) => { f.out += b; });
  p.stderr!.on("data", (b: Buffer) => { f.err += b; });
  followers.push(f);
  return f;
}

/** Types a fresh line into the console once the follower streams, and waits for the guest's echo of it in the follower's output. */
async function sendAndFollow(f: Follower, what: string): Promise<string> {
  // The guest prints a marker every second: once one arrives, the follower is attached.
  await waitFor(`logs --follow streaming (${what})`, () => f.out.includes(MARKER), 30_000, 100);
  const token = `${what}-${randomBytes(4).toString("hex")}`;
  assert.ok(!f.out.includes(token));
  const r = await a.cli(["vm", "console", name, "--send", `${token}\\n`, "--until", `got:${token}`], 60_000);
  assert.equal(r.code, 0, r.stderr);
  await waitFor(`got:${token} through logs --follow`, () => f.out.includes(`got:${token}`), 30_000, 100);
  return f.out;
}

const followers: Follower[] = [];
let c: Cluster;
let a: AgentProcess;
const name = `boot${process.pid}`;

let release: ((domains: string[]) => Promise<void>) | undefined;

before(async () => {
  ({ c, a, release } = await startSystemAgent());
});
after(async () => {
  for (const f of followers) f.kill();
  await release?.([`thoc-${name}`]);
});

test("boot a busybox initramfs under TCG through the agent and the CLI", { timeout: 180_000 }, async () => {
  const initrd = await buildInitramfs(c.root);
  let r = await a.cli(["image", "import", "busybox", "--kernel", kernel(), "--initrd", initrd, "--cmdline", "console=ttyS0 quiet panic=-1"]);
  assert.equal(r.code, 0, r.stderr);

  const t0 = Date.now();
  r = await a.cli(["vm", "create", name, "--image", "busybox", "--vcpus", "1", "--ram", "256", "--disk", "1", "--network", "none", "--json"], 120_000);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { status: string }).status, "running");
  assert.match(virsh("domstate", `thoc-${name}`), /running/);
  assert.match(virsh("dumpxml", `thoc-${name}`), /<domain type='qemu'/);

  // The serial log (virtlogd) shows the marker.
  const logs = await waitFor("the boot marker in vm logs", async () => {
    const l = await a.cli(["vm", "logs", name]);
    return l.stdout.includes(`${MARKER} 1`) ? l.stdout : "";
  }, 90_000, 500);
  const bootMs = Date.now() - t0;
  assert.match(logs, new RegExp(`${MARKER} init`));
  console.log(`# booted to the marker in ${bootMs} ms (create call + kernel + initramfs under TCG)`);

  // The console receives the marker, and what is typed reaches the guest and comes back.
  r = await a.cli(["vm", "console", name, "--until", `${MARKER} `], 60_000);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`${MARKER} \\d+`));
  r = await a.cli(["vm", "console", name, "--send", "hello-thoc\\n", "--until", "got:hello-thoc"], 60_000);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /got:hello-thoc/);

  // logs --follow streams output written after it started: a line typed now comes back through it.
  const f1 = follow(a, name);
  try {
    const seen = await sendAndFollow(f1, "follow");
    assert.ok(seen.includes(MARKER), "the guest's own output streams too");
  } finally {
    f1.kill();
  }

  r = await a.cli(["vm", "metrics", name, "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const m = JSON.parse(r.stdout) as { state: string; cpuSeconds: number; memoryBytes: number };
  assert.equal(m.state, "running");
  assert.ok(m.cpuSeconds > 0);
  assert.equal(m.memoryBytes, 256 * 2 ** 20);

  // VNC through the agent's WebSocket with a single-use token: the VM's VNC server greets with RFB.
  r = await a.cli(["vm", "vnc", name, "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const { url } = JSON.parse(r.stdout) as { url: string };
  assert.match(url, new RegExp(`^ws://${a.bind.replace(/\./g, "\\.")}:7402/vnc/${name}\\?token=`));
  assert.match((await wsFirstMessage(url)).toString("latin1"), /^RFB 003\.00\d\n/);
  await assert.rejects(wsFirstMessage(url), /401/, "a token works once");

  // An internal snapshot of the running VM.
  r = await a.cli(["vm", "snapshot", "create", name, "booted"], 60_000);
  assert.equal(r.code, 0, r.stderr);
  r = await a.cli(["vm", "snapshot", "list", name, "--json"]);
  assert.deepEqual((JSON.parse(r.stdout) as { name: string; vmState: string }[]).map((s) => [s.name, s.vmState]), [["booted", "running"]]);

  // Restore it (QEMU loadvm of the internal snapshot, memory included): the guest runs on from there.
  r = await a.cli(["vm", "snapshot", "restore", name, "booted"], 60_000);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /restored to booted \(running\)/);
  assert.match(virsh("domstate", `thoc-${name}`), /running/);
  // The guest runs on after the restore: it answers a line typed now, which it cannot have seen before the snapshot.
  const back = `restored-${randomBytes(4).toString("hex")}`;
  r = await a.cli(["vm", "console", name, "--send", `${back}\\n`, "--until", `got:${back}`], 60_000);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`got:${back}`));
  assert.equal((await a.cli(["vm", "snapshot", "delete", name, "booted"], 60_000)).code, 0);
  r = await a.cli(["vm", "snapshot", "list", name, "--json"]);
  assert.deepEqual(JSON.parse(r.stdout), []);

  // Restart (forced): a new QEMU, which boots to the marker again.
  r = await a.cli(["vm", "restart", name, "--force", "--json"], 60_000);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { status: string }).status, "running");
  // The log (append on) now holds two boots.
  await waitFor("a second boot in vm logs", async () => (await a.cli(["vm", "logs", name])).stdout.split(`${MARKER} init`).length === 3, 90_000, 500);

  // The agent dies; the VM keeps running; the restarted agent reconciles and still manages it.
  await a.kill("SIGKILL");
  assert.match(virsh("domstate", `thoc-${name}`), /running/);
  await a.start();
  r = await a.cli(["vm", "show", name, "--json"]);
  assert.equal((JSON.parse(r.stdout) as { status: string }).status, "running");

  // A follower started now sees new output, stays through the stop, and ends cleanly (exit 0) when the VM is deleted.
  const f2 = follow(a, name);
  await sendAndFollow(f2, "until-delete");

  // Stop: ACPI first (busybox init ignores it), then power-off after the timeout.
  r = await a.cli(["vm", "stop", name, "--timeout-ms", "1500", "--json"], 60_000);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { status: string }).status, "stopped");
  assert.match(virsh("domstate", `thoc-${name}`), /shut off/);

  r = await a.cli(["vm", "delete", name], 60_000);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(virsh("list", "--all", "--name"), new RegExp(`thoc-${name}\\b`));
  const ended = await Promise.race([f2.exit, new Promise<string>((res) => setTimeout(() => res("still running 10 s after the delete"), 10_000))]);
  f2.kill();
  assert.equal(ended, 0, `logs --follow after the delete: ${String(ended)} ${f2.err}`);
  assert.deepEqual(await readdir(path.join(a.dataDir, "vms")), []);
});
