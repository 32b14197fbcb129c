import { test, after } from "node:test";
import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { QemuAccess } from "./access.js";

// Runs as root in CI (like the agent under systemd): chown to any group and spawn as any uid work.
const root = await mkdtemp(path.join(tmpdir(), "thoc-access-"));
after(() => rm(root, { recursive: true, force: true }));
await chmod(root, 0o755); // stands for /var/lib
const QEMU = { uid: 64055, gid: 64055 };
const mode = async (p: string) => { const s = await stat(p); return [s.mode & 0o7777, s.uid, s.gid]; };

test("no QEMU identity (test driver, QEMU as root or as us): nothing is opened, nothing is changed", async () => {
  const a = new QemuAccess();
  a.setIdentity({ uid: 0, gid: 0 });
  assert.equal(a.identity, undefined, "QEMU as root needs nothing from us");
  const d = path.join(root, "none", "vms");
  await a.dir(d);
  assert.deepEqual(await mode(d), [0o700, 0, 0]);
  assert.deepEqual(await a.prepareDataDir(path.join(root, "none")), []);
});

test("the data dir becomes 0710 root:<QEMU's group>; vms/, images/ and the files QEMU opens follow; the rest stays the agent's", { skip: process.getuid?.() !== 0 && "needs root" }, async () => {
  const a = new QemuAccess();
  a.setIdentity(QEMU);
  const data = path.join(root, "d1");
  await mkdir(data, { mode: 0o750 });
  await chmod(data, 0o750);
  assert.equal(a.canTraverse(data), false);
  const changed = await a.prepareDataDir(data);
  assert.deepEqual(changed, [`${data}: 0750 0:0 -> 0710 0:64055`]);
  assert.deepEqual(await mode(data), [0o710, 0, QEMU.gid]);
  assert.equal(a.canTraverse(data), true);
  assert.deepEqual(await a.prepareDataDir(data), [], "idempotent");
  // An old layout (0755/0644 root:root) is brought in line; the agent's own files are not QEMU's business.
  const vm = path.join(data, "vms", "web1");
  await mkdir(vm, { recursive: true, mode: 0o755 });
  for (const f of ["disk.qcow2", "seed.iso", "serial.log"]) await writeFile(path.join(vm, f), "x", { mode: 0o644 });
  await mkdir(path.join(data, "meta"), { mode: 0o700 });
  await a.normalize(path.join(data, "vms"), path.join(data, "images"));
  assert.deepEqual(await mode(path.join(data, "vms")), [0o710, 0, QEMU.gid]);
  assert.deepEqual(await mode(path.join(data, "images")), [0o710, 0, QEMU.gid]);
  assert.deepEqual(await mode(vm), [0o710, 0, QEMU.gid]);
  assert.deepEqual(await mode(path.join(vm, "disk.qcow2")), [0o660, 0, QEMU.gid]);
  assert.deepEqual(await mode(path.join(vm, "seed.iso")), [0o640, 0, QEMU.gid]);
  assert.deepEqual(await mode(path.join(vm, "serial.log")), [0o644, 0, 0], "not a file QEMU opens");
  assert.deepEqual(await mode(path.join(data, "meta")), [0o700, 0, 0]);
});

test("a data dir the agent creates, and the parents it creates on the way, get the same treatment; a parent it did not create is refused with the fix", { skip: process.getuid?.() !== 0 && "needs root" }, async () => {
  const a = new QemuAccess();
  a.setIdentity(QEMU);
  const made = path.join(root, "made", "by", "agent");
  await a.prepareDataDir(made);
  for (const d of [path.join(root, "made"), path.join(root, "made", "by"), made]) assert.deepEqual(await mode(d), [0o710, 0, QEMU.gid], d);
  const closed = path.join(root, "closed");
  await mkdir(closed, { mode: 0o700 });
  await assert.rejects(a.prepareDataDir(path.join(closed, "thoc")), (e: Error & { details?: { key?: string } }) =>
    e.details?.key === "dataDir" && e.message.includes(`cannot search ${closed} (mode 0700, owner 0:0), a parent of the data dir`) && e.message.includes(`chmod o+x ${closed}`));
  assert.deepEqual(await mode(closed), [0o700, 0, 0], "never changed");
});
