/**
 * VmManager on libvirt's test driver (test:///default and a custom
 * test:///path.xml with GPUs): every lifecycle, snapshot, GPU-allocation and
 * refusal path, and that a refused request leaves nothing behind.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { LibvirtHypervisor } from "../hypervisor/index.js";
import { createSnapshot, deleteSnapshot, listSnapshots, restoreSnapshot, vmMetrics } from "./ops.js";
import { fixture, gpuDriverUri, importImages, type Fixture } from "./testutil.js";

const hv = new LibvirtHypervisor("test:///default");
let f: Fixture;
before(async () => { await hv.open(); f = await fixture(hv); await f.m.start(); await importImages(f); });
after(async () => { await f.cleanup(); await hv.close(); });

const code = (c: string, re?: RegExp) => (e: { code?: string; message: string }) => {
  assert.equal(e.code, c, e.message);
  if (re) assert.match(e.message, re);
  return true;
};

async function nothingLeft(name: string): Promise<void> {
  assert.equal(await f.store.json("vm").get(name), undefined, "no record");
  assert.equal(await hv.lookup(`thoc-${name}`), undefined, "no domain");
  const dirs = await readdir(path.join(f.dir, "data", "vms")).catch(() => [] as string[]);
  assert.ok(!dirs.includes(name), `no VM dir (have ${dirs.join(",")})`);
}

test("create, list, show, stop, start, restart, delete on test:///default", async () => {
  const r = await f.m.create({ name: "web1", image: "debian-12", vcpus: 2, ramMB: 512, diskGB: 5, network: { ipAddress: "10.0.0.5/24", gateway: "10.0.0.1", vlanId: 100 }, cloudInit: { password: "s3cret-pass", sshPublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE user@h" } });
  assert.equal(r.status, "running");
  assert.equal(r.domain, "thoc-web1");
  assert.equal(r.spec.cloudInit?.password, "", "clear password never stored");
  assert.equal(r.passwordSet, true);
  const dom = await hv.lookup("thoc-web1");
  assert.equal(dom?.state, "running");
  assert.equal(dom?.uuid, r.uuid);
  const xml = await hv.xml("thoc-web1");
  assert.match(xml, /thoc:vm/);
  assert.match(xml, /<source bridge='br0'\/>|<source bridge="br0"\/>/);
  // Disk overlay over the base image, sized to diskGB.
  const disk = path.join(f.dir, "data", "vms", "web1", "disk.qcow2");
  const info = JSON.parse(execFileSync("qemu-img", ["info", "--output=json", disk], { encoding: "utf8" })) as { "virtual-size": number; "backing-filename": string };
  assert.equal(info["virtual-size"], 5 * 2 ** 30);
  assert.match(info["backing-filename"], /images\/debian-12\/disk$/);
  // The seed ISO holds the hash, never the clear text; the store neither.
  const iso = await readFile(path.join(f.dir, "data", "vms", "web1", "seed.iso"));
  assert.ok(!iso.includes("s3cret-pass"), "clear password not in the ISO");
  assert.ok(iso.includes("$6$"), "SHA-512 crypt hash in the ISO");
  assert.ok(iso.includes("cidata"));
  assert.ok(iso.includes("10.0.0.5/24"));
  const raw = JSON.stringify(await f.store.json("vm").get("web1"));
  assert.ok(!raw.includes("s3cret-pass"));

  assert.deepEqual((await f.m.list()).map((x) => x.name), ["web1"]);
  assert.equal((await f.m.get("web1")).status, "running");
  assert.equal((await f.m.stopVm("web1")).status, "stopped");
  assert.equal((await hv.lookup("thoc-web1"))?.state, "shutoff");
  assert.equal((await f.m.stopVm("web1")).status, "stopped", "stop is idempotent");
  assert.equal((await f.m.startVm("web1")).status, "running");
  assert.equal((await f.m.restartVm("web1", { force: true })).status, "running");
  const m = await vmMetrics(f.m, "web1", 2000);
  assert.equal(m.state, "running");
  await f.m.deleteVm("web1");
  await nothingLeft("web1");
  await assert.rejects(f.m.get("web1"), code("not_found", /vm list/));
  await assert.rejects(f.m.deleteVm("web1"), code("not_found"));
});

test("no-start create, kernel image without disk, network none", async () => {
  const r = await f.m.create({ name: "k1", image: "kern", vcpus: 1, ramMB: 64, diskGB: 0, network: { mode: "none" } }, { start: false });
  assert.equal(r.status, "stopped");
  assert.equal(r.imageKind, "kernel");
  const xml = await hv.xml("thoc-k1");
  assert.match(xml, /<kernel>[^<]*images\/kern\/kernel<\/kernel>/);
  assert.match(xml, /<cmdline>console=ttyS0<\/cmdline>/);
  assert.doesNotMatch(xml, /<interface/);
  await f.m.deleteVm("k1");
  await nothingLeft("k1");
});

test("bad requests are refused with a message that says what to fix, and leave nothing behind", async () => {
  const base = { image: "debian-12", vcpus: 1, ramMB: 256, diskGB: 2 };
  const cases: [object, string, RegExp][] = [
    [{ ...base, name: "b1", vcpus: 0 }, "invalid_argument", /vcpus: 0 vCPUs: a VM needs at least 1/],
    [{ ...base, name: "b2", ramMB: 64 * 1024 * 1024 }, "invalid_argument", /more than this host has/],
    [{ ...base, name: "b3", image: "ubuntu-22.04" }, "not_found", /image ubuntu-22.04 is not on this node: import it with `thoc-node image import ubuntu-22.04 FILE`/],
    [{ ...base, name: "b4", network: { ipMode: "static", ipAddress: "10.0.0.5", netmask: "255.255.255.0" } }, "invalid_argument", /network.gateway: static addressing needs a gateway/],
    [{ ...base, name: "b5", network: { vlanId: 5000 } }, "invalid_argument", /VLAN 5000 is out of range: VLAN ids are 1-4094/],
    [{ ...base, name: "B_6" }, "invalid_argument", /not a valid VM name/],
    [{ ...base, name: "b7", diskGB: 0 }, "invalid_argument", /a disk image needs a disk/],
    [{ ...base, name: "b8", network: { ipAddress: "10.0.0.5/24", gateway: "10.1.0.1" } }, "invalid_argument", /not in 10.0.0.5\/24/],
    [{ ...base, name: "b9", gpu: { mode: "passthrough", deviceIds: ["GPU-9"] } }, "not_found", /no GPU "GPU-9" on this node/],
    [{ ...base, name: "b10", ramMB: 15 * 1024, vcpus: 1 }, "ok", /./],
  ];
  for (const [spec, c, re] of cases) {
    const name = (spec as { name: string }).name;
    if (c === "ok") {
      // The control: just under the host's RAM is accepted, so b2's refusal is about the size, not RAM as such.
      assert.equal((await f.m.create(spec)).name, name);
      await f.m.deleteVm(name);
      await nothingLeft(name);
      continue;
    }
    await assert.rejects(f.m.create(spec), code(c, re), name);
    if (/^[a-z0-9-]+$/.test(name)) await nothingLeft(name);
  }
  // RAM budget: a second VM that does not fit beside the first.
  await f.m.create({ ...base, name: "big", ramMB: 12 * 1024 });
  await assert.rejects(f.m.create({ ...base, name: "big2", ramMB: 6 * 1024 }), code("resource_exhausted", /already have 12288 of 16384 MiB; ask for at most 4096 MiB/));
  await nothingLeft("big2");
  // Duplicate name.
  await assert.rejects(f.m.create({ ...base, name: "big" }), code("already_exists", /a VM named big already exists/));
  assert.equal((await f.m.get("big")).status, "running", "the original is untouched");
  await f.m.deleteVm("big");
  // A domain libvirt has that thoc-node did not make.
  await hv.define(`<domain type='test'><name>thoc-foreign</name><memory>65536</memory><os><type>hvm</type></os></domain>`);
  await assert.rejects(f.m.create({ ...base, name: "foreign" }), code("already_exists", /not managed by thoc-node/));
  await hv.undefine("thoc-foreign");
});

test("concurrent creates for the last free memory: exactly one passes the check and reserves it", async () => {
  const base = { image: "debian-12", vcpus: 1, diskGB: 2 };
  const rs = await Promise.allSettled([1, 2, 3].map((i) => f.m.create({ ...base, name: `ram${i}`, ramMB: 10 * 1024 }, { start: false })));
  const won = rs.flatMap((r, i) => (r.status === "fulfilled" ? [`ram${i + 1}`] : []));
  assert.equal(won.length, 1, JSON.stringify(rs.map((r) => (r.status === "rejected" ? (r.reason as Error).message : "ok"))));
  for (const r of rs) if (r.status === "rejected") code("resource_exhausted", /already have 10240 of 16384 MiB; ask for at most 6144 MiB/)(r.reason as Error);
  for (const name of ["ram1", "ram2", "ram3"].filter((n) => !won.includes(n))) await nothingLeft(name);
  await f.m.deleteVm(won[0]!);
});

test("refusals before anything is created: short password, corrupt base image", async () => {
  const before = await f.m.list();
  await assert.rejects(f.m.create({ name: "rb1", image: "debian-12", vcpus: 1, ramMB: 128, diskGB: 2, cloudInit: { password: "short" } }), code("invalid_argument", /shorter than 8/));
  await nothingLeft("rb1");
  // A cached image whose bytes changed since import is refused by its checksum.
  const disk = path.join(f.dir, "data", "images", "kern", "initrd");
  const { appendFile } = await import("node:fs/promises");
  const st0 = await stat(disk);
  await appendFile(disk, "x");
  await assert.rejects(f.m.create({ name: "rb2", image: "kern", vcpus: 1, ramMB: 64, diskGB: 0 }), code("data_loss", /corrupt; import the image again/));
  await nothingLeft("rb2");
  assert.ok(st0.size > 0);
  assert.deepEqual(await f.m.list(), before);
});

test("snapshots: create, list, restore, delete (internal, on the test driver)", async () => {
  await f.m.create({ name: "s1", image: "debian-12", vcpus: 1, ramMB: 128, diskGB: 2 });
  const a = await createSnapshot(f.m, "s1", "before", "first one");
  assert.equal(a.name, "before");
  assert.equal(a.state, "running");
  await assert.rejects(createSnapshot(f.m, "s1", "before"), code("already_exists"));
  await assert.rejects(createSnapshot(f.m, "s1", "bad name!"), code("invalid_argument"));
  await f.m.stopVm("s1", { force: true });
  await createSnapshot(f.m, "s1", "after-stop");
  assert.deepEqual((await listSnapshots(f.m, "s1")).map((s) => s.name).sort(), ["after-stop", "before"]);
  const r = await restoreSnapshot(f.m, "s1", "before");
  assert.equal(r.status, "running", "restoring a running snapshot runs the VM");
  await assert.rejects(restoreSnapshot(f.m, "s1", "nope"), code("not_found", /has no snapshot nope/));
  await deleteSnapshot(f.m, "s1", "after-stop");
  assert.deepEqual((await listSnapshots(f.m, "s1")).map((s) => s.name), ["before"]);
  await f.m.deleteVm("s1");
  await nothingLeft("s1");
});

test("status follows libvirt lifecycle events; reconcile adopts and marks missing", async () => {
  await f.m.create({ name: "ev1", image: "debian-12", vcpus: 1, ramMB: 128, diskGB: 2 });
  await hv.destroy("thoc-ev1"); // behind the manager's back
  const t0 = Date.now();
  while ((await f.m.get("ev1")).status !== "stopped" && Date.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 20));
  assert.equal((await f.m.get("ev1")).status, "stopped");
  await hv.start("thoc-ev1");
  while ((await f.m.get("ev1")).status !== "running" && Date.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 20));
  assert.equal((await f.m.get("ev1")).status, "running");

  // Forget the record (as if the store were restored from before the VM existed): reconcile adopts the running domain.
  const rec = (await f.m.get("ev1"));
  await f.store.json("vm").del("ev1");
  const res = await f.m.reconcile();
  assert.deepEqual(res.adopted, ["ev1"]);
  const adopted = await f.m.get("ev1");
  assert.equal(adopted.status, "running");
  assert.equal(adopted.uuid, rec.uuid);
  assert.equal(adopted.spec.ramMB, 128);
  // The domain vanishes: reconcile marks the record missing.
  await hv.destroy("thoc-ev1");
  await hv.undefine("thoc-ev1");
  await new Promise((r) => setTimeout(r, 100));
  await f.m.reconcile();
  assert.equal((await f.m.get("ev1")).status, "missing");
  await f.m.deleteVm("ev1");
  await nothingLeft("ev1");
});

test("GPUs from a custom test driver: inventory, passthrough XML, never given twice, MIG profiles per model", async () => {
  const uri = await gpuDriverUri(f.dir);
  const ghv = new LibvirtHypervisor(uri);
  const g = await fixture(ghv);
  try {
    await ghv.open();
    await g.m.start();
    await importImages(g);
    const gpus = await g.m.gpus();
    assert.deepEqual(gpus.map((x) => [x.id, x.pciAddress, x.migModel]), [["GPU-0", "0000:3b:00.0", "A100-40GB"], ["GPU-1", "0000:5e:00.0", "H100-80GB"], ["GPU-2", "0000:af:00.0", ""]]);
    const base = { image: "debian-12", vcpus: 1, ramMB: 128, diskGB: 2 };
    const a = await g.m.create({ ...base, name: "ga", gpu: { mode: "passthrough", deviceIds: ["0000:af:00.0"] } });
    assert.deepEqual(a.gpus.map((x) => x.pciAddress), ["0000:af:00.0"]);
    assert.match(await ghv.xml("thoc-ga"), /<hostdev mode=.subsystem. type=.pci. managed=.yes.>[\s\S]*bus=.0xaf./);
    await assert.rejects(g.m.create({ ...base, name: "gb", gpu: { mode: "passthrough", deviceIds: ["GPU-2"] } }), code("resource_exhausted", /GPU GPU-2 \(0000:af:00.0\) is already assigned to VM ga/));
    await assert.rejects(g.m.create({ ...base, name: "gb", gpu: { mode: "mig", migProfile: "1g.5gb", deviceIds: ["GPU-1"] } }), code("invalid_argument", /1g.5gb is not a MIG profile of H100-80GB: use one of 1g.10gb/));
    const mig1 = await g.m.create({ ...base, name: "m1", gpu: { mode: "mig", migProfile: "1g.5gb" } });
    assert.equal(mig1.gpus[0]?.pciAddress, "0000:3b:00.0", "1g.5gb exists only on the A100-40GB");
    assert.match(await ghv.xml("thoc-m1"), /type=.mdev./);
    await g.m.create({ ...base, name: "m2", gpu: { mode: "mig", migProfile: "4g.20gb", deviceIds: ["GPU-0"] } });
    await assert.rejects(g.m.create({ ...base, name: "m3", gpu: { mode: "mig", migProfile: "3g.20gb", deviceIds: ["GPU-0"] } }), code("resource_exhausted", /7 compute slices are taken/));
    await g.m.create({ ...base, name: "m3", gpu: { mode: "mig", migProfile: "2g.10gb", deviceIds: ["GPU-0"] } });
    // Passing a GPU whose MIG slices are handed out is refused too.
    await assert.rejects(g.m.create({ ...base, name: "p0", gpu: { mode: "passthrough", deviceIds: ["GPU-0"] } }), code("resource_exhausted", /already assigned to VM m1, m2, m3/));
    await g.m.deleteVm("ga");
    const b = await g.m.create({ ...base, name: "gb", gpu: { mode: "passthrough", deviceIds: ["GPU-2"] } });
    assert.equal(b.gpus[0]?.pciAddress, "0000:af:00.0", "a deleted VM's GPU is free again");
    // Concurrent creates asking for the same GPU: exactly one wins.
    const rs = await Promise.allSettled([1, 2, 3].map((i) => g.m.create({ ...base, name: `race${i}`, gpu: { mode: "passthrough", deviceIds: ["GPU-1"] } })));
    assert.equal(rs.filter((r) => r.status === "fulfilled").length, 1, JSON.stringify(rs.map((r) => r.status === "rejected" ? (r.reason as Error).message : "ok")));
  } finally {
    await g.cleanup();
    await ghv.close();
  }
});
