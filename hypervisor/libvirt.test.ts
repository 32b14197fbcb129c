import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { LibvirtHypervisor } from "./index.js";
import { parseDacLabel } from "./libvirt.js";

const XML = (name: string, uuid: string) => `<domain type='test'><name>${name}</name><uuid>${uuid}</uuid><memory unit='KiB'>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>`;

const hv = new LibvirtHypervisor("test:///default");
after(() => hv.close());

test("libvirt test driver: lifecycle, events, snapshots, stats, errors", async () => {
  await hv.open();
  assert.match(await hv.version(), /^libvirt \d+\.\d+\.\d+$/);
  const events: string[] = [];
  hv.onLifecycle((e) => { if (e.name === "thoc-t1") events.push(e.event); });
  const info = await hv.define(XML("thoc-t1", "9f1c2a3b-0000-4000-8000-000000000001"));
  assert.equal(info.name, "thoc-t1");
  assert.equal(info.uuid, "9f1c2a3b-0000-4000-8000-000000000001");
  assert.equal(info.state, "shutoff");
  await hv.start("thoc-t1");
  assert.equal((await hv.lookup("thoc-t1"))?.state, "running");
  const names = (await hv.list()).map((d) => d.name);
  assert.ok(names.includes("thoc-t1") && names.includes("test"));
  assert.match(await hv.xml("thoc-t1"), /<name>thoc-t1<\/name>/);
  const snap = await hv.snapshotCreate("thoc-t1", "<domainsnapshot><name>s1</name><description>first</description></domainsnapshot>");
  assert.equal(snap, "s1");
  const snaps = await hv.snapshotList("thoc-t1");
  assert.equal(snaps.length, 1);
  assert.equal(snaps[0]!.name, "s1");
  assert.equal(snaps[0]!.description, "first");
  assert.equal(snaps[0]!.state, "running");
  await hv.destroy("thoc-t1");
  await hv.snapshotRevert("thoc-t1", "s1");
  assert.equal((await hv.lookup("thoc-t1"))?.state, "running");
  await hv.snapshotDelete("thoc-t1", "s1");
  await assert.rejects(hv.snapshotDelete("thoc-t1", "s1"), (e: { code: string }) => e.code === "not_found");
  const st = await hv.stats(2000, ["thoc-t1"]);
  assert.equal(st.length, 1);
  assert.equal(st[0]!.state, "running");
  assert.ok(st[0]!.cpuTimeNs >= 0);
  await assert.rejects(hv.start("thoc-t1"), (e: { code: string; message: string }) => e.code === "failed_precondition" && /already running/.test(e.message));
  await hv.destroy("thoc-t1");
  await hv.undefine("thoc-t1");
  assert.equal(await hv.lookup("thoc-t1"), undefined);
  await assert.rejects(hv.start("thoc-t1"), (e: { code: string }) => e.code === "not_found");
  await assert.rejects(hv.define("<domain type='test'><name>bad"), (e: { code: string }) => e.code === "invalid_argument");
  // Events arrive through libvirt's event loop on a pool thread.
  const t0 = Date.now();
  while (!events.includes("undefined") && Date.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(events.filter((e) => e === "defined" || e === "started" || e === "undefined").slice(0, 2), ["defined", "started"]);
  assert.ok(events.includes("stopped") && events.includes("undefined"), events.join(","));
});

test("libvirt: connection to a missing socket fails with UNAVAILABLE and a hint", async () => {
  const bad = new LibvirtHypervisor("qemu+unix:///system?socket=/nonexistent/libvirt-sock");
  await assert.rejects(bad.open(), (e: { code: string; message: string }) => e.code === "unavailable" && /libvirt-sock|connect/i.test(e.message));
  assert.equal(bad.connected(), false);
  assert.match(bad.lastError() ?? "", /libvirt-sock|connect/i);
  await bad.close();
});

test("libvirt: the reconnect loop keeps trying until close(), and stops then", { timeout: 30_000 }, async () => {
  // A socket that exists but hangs up on every client: each connect attempt shows as one accepted connection.
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-lv-"));
  const sock = path.join(dir, "libvirt-sock");
  let attempts = 0;
  const server = net.createServer((c) => { attempts++; c.destroy(); });
  const hv2 = new LibvirtHypervisor(`qemu+unix:///system?socket=${sock}`);
  try {
    await assert.rejects(hv2.open(), (e: { code: string }) => e.code === "unavailable");
    await new Promise<void>((r) => server.listen(sock, r));
    // The watchdog (every 2 s) starts the loop; the loop retries with a 250 ms, 500 ms, ... backoff.
    const t0 = Date.now();
    while (attempts < 3 && Date.now() - t0 < 4000) await new Promise((r) => setTimeout(r, 50));
    assert.ok(attempts >= 3, `${attempts} reconnect attempts in ${Date.now() - t0} ms`);
    assert.equal(hv2.connected(), false);
    await hv2.close();
    const atClose = attempts;
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(attempts, atClose, "no attempt after close()");
  } finally {
    await hv2.close();
    server.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("host capabilities: the test driver has no KVM and no QEMU user; the DAC label is parsed from the capabilities XML", async () => {
  // hv is open (first test): a second open() would retain libvirt's event loop twice and keep the process alive.
  if (!hv.connected()) await hv.open();
  const caps = await hv.hostCapabilities();
  assert.equal(caps.kvm.available, false);
  assert.match(caps.kvm.why ?? "", /not supported/, "libvirt's own reason");
  assert.equal(caps.qemu, undefined, "the test driver runs no QEMU");
  // As libvirtd on Debian answers for qemu:///system (qemu.conf user/group libvirt-qemu).
  const debian = `<capabilities><host><secmodel><model>none</model><doi>0</doi></secmodel><secmodel><model>dac</model><doi>0</doi>
    <baselabel type='kvm'>+64055:+64055</baselabel><baselabel type='qemu'>+64055:+64055</baselabel></secmodel></host></capabilities>`;
  assert.deepEqual(parseDacLabel(debian), { qemu: { uid: 64055, gid: 64055 } });
  assert.deepEqual(parseDacLabel("<capabilities><host><secmodel><model>apparmor</model></secmodel></host></capabilities>"), {});
});

test("interface addresses: the test driver answers both sources through the real call; a missing domain is not_found", async () => {
  if (!hv.connected()) await hv.open();
  // test:///default's own "test" domain runs with one interface, testnet0, and a made-up address.
  for (const source of ["lease", "agent"] as const) {
    const ifaces = await hv.interfaceAddresses("test", source);
    assert.equal(ifaces.length, 1, source);
    assert.equal(ifaces[0]!.name, "testnet0");
    assert.match(ifaces[0]!.mac, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    assert.deepEqual(ifaces[0]!.addresses.map((a) => a.type), ["ipv4"]);
    assert.match(ifaces[0]!.addresses[0]!.address, /^\d+\.\d+\.\d+\.\d+$/);
    assert.ok(ifaces[0]!.addresses[0]!.prefix > 0 && ifaces[0]!.addresses[0]!.prefix <= 32);
  }
  await assert.rejects(hv.interfaceAddresses("thoc-no-such-domain", "lease"), (e: { code: string; message: string }) => e.code === "not_found" && /thoc-no-such-domain/.test(e.message));
});
