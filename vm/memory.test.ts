/**
 * Paths the test driver cannot show, on the in-memory hypervisor: a failure
 * after define rolls every step back, a guest that ignores ACPI is powered off
 * after the timeout, the console carries bytes both ways, logs follow a file.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { appendFile, mkdir, readdir } from "node:fs/promises";
import path from "node:path";
import { MemoryHypervisor } from "../hypervisor/index.js";
import { ThocError } from "../errors/index.js";
import { openConsole, readLog } from "./ops.js";
import { fixture, importImages, type Fixture } from "./testutil.js";

class FlakyHypervisor extends MemoryHypervisor {
  failStart = false;
  override async start(name: string): Promise<void> {
    if (this.failStart) throw new ThocError("internal", `start ${name}: internal error: qemu unexpectedly closed the monitor`);
    return super.start(name);
  }
}

const hv = new FlakyHypervisor();
let f: Fixture;
before(async () => { await hv.open(); f = await fixture(hv); await f.m.start(); await importImages(f); });
after(async () => { await f.cleanup(); await hv.close(); });

test("a failure after define (start refused) undoes define, disk, seed ISO and the record", async () => {
  hv.failStart = true;
  await assert.rejects(f.m.create({ name: "rb", image: "debian-12", vcpus: 1, ramMB: 128, diskGB: 2, cloudInit: { password: "password-123" } }), /qemu unexpectedly closed/);
  hv.failStart = false;
  assert.equal(await hv.lookup("thoc-rb"), undefined);
  assert.deepEqual(await f.m.list(), []);
  assert.deepEqual(await readdir(path.join(f.dir, "data", "vms")), []);
});

test("stop: ACPI first; a guest that ignores it is powered off after the timeout", async () => {
  await f.m.create({ name: "s1", image: "debian-12", vcpus: 1, ramMB: 128, diskGB: 2 });
  hv.acpi = "obey";
  let t0 = Date.now();
  assert.equal((await f.m.stopVm("s1")).status, "stopped");
  assert.ok(Date.now() - t0 < 250, "an obedient guest stops before the timeout");
  await f.m.startVm("s1");
  hv.acpi = "ignore";
  t0 = Date.now();
  assert.equal((await f.m.stopVm("s1", { timeoutMs: 400 })).status, "stopped");
  assert.ok(Date.now() - t0 >= 400, "waited for the ACPI timeout before destroying");
  assert.equal((await hv.lookup("thoc-s1"))?.state, "shutoff");
  hv.acpi = "obey";
  await f.m.deleteVm("s1");
});

test("console: output of the guest and echo of input; refused when not running", async () => {
  await f.m.create({ name: "c1", image: "debian-12", vcpus: 1, ramMB: 128, diskGB: 2 });
  const con = await openConsole(f.m, "c1");
  const got: string[] = [];
  const reading = (async () => { for await (const b of con.output()) got.push(Buffer.from(b).toString()); })();
  hv.guestWrites("thoc-c1", "login: ");
  await con.write(Buffer.from("root\n"));
  await new Promise((r) => setTimeout(r, 20));
  await f.m.stopVm("c1", { force: true });
  await reading;
  assert.equal(got.join(""), "login: root\n");
  await assert.rejects(openConsole(f.m, "c1"), (e: ThocError) => e.code === "failed_precondition" && /not running/.test(e.message));
  await f.m.deleteVm("c1");
});

test("logs: what is there, the tail, and follow until the VM is deleted", async () => {
  await f.m.create({ name: "l1", image: "debian-12", vcpus: 1, ramMB: 128, diskGB: 2 });
  const log = f.m.serialLog("l1");
  await mkdir(path.dirname(log), { recursive: true });
  await appendFile(log, "line1\nline2\n");
  const all: string[] = [];
  for await (const b of readLog(f.m, "l1", {})) all.push(Buffer.from(b).toString());
  assert.equal(all.join(""), "line1\nline2\n");
  const tail: string[] = [];
  for await (const b of readLog(f.m, "l1", { tailBytes: 6 })) tail.push(Buffer.from(b).toString());
  assert.equal(tail.join(""), "line2\n");
  const followed: string[] = [];
  const following = (async () => { for await (const b of readLog(f.m, "l1", { follow: true })) followed.push(Buffer.from(b).toString()); })();
  await new Promise((r) => setTimeout(r, 100));
  await appendFile(log, "line3\n");
  await new Promise((r) => setTimeout(r, 400));
  await f.m.deleteVm("l1");
  await following;
  assert.equal(followed.join(""), "line1\nline2\nline3\n");
});
