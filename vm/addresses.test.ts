/**
 * Guest addresses on the in-memory hypervisor (which reports what a test
 * sets): the lease first, the guest agent next, nothing shown that is only the
 * guest's loopback or link-local, and a source that hangs does not hold up
 * the answer. Through vmService, as `vm list` and `vm show` get them.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { MemoryHypervisor, type AddressSource, type GuestInterface } from "../hypervisor/index.js";
import { guestAddresses } from "./addresses.js";
import { vmService } from "./rpc.js";
import { fixture, importImages, type Fixture } from "./testutil.js";

class SlowAgent extends MemoryHypervisor {
  hang = false;
  override interfaceAddresses(name: string, source: AddressSource): Promise<GuestInterface[]> {
    if (this.hang && source === "agent") return new Promise(() => {});
    return super.interfaceAddresses(name, source);
  }
}

const hv = new SlowAgent();
let f: Fixture;
before(async () => { await hv.open(); f = await fixture(hv); await f.m.start(); await importImages(f); });
after(async () => { await f.cleanup(); await hv.close(); });

const iface = (...addrs: [string, number][]): GuestInterface[] =>
  [{ name: "vnet0", mac: "52:54:00:00:00:01", addresses: addrs.map(([address, prefix]) => ({ type: address.includes(":") ? "ipv6" : "ipv4", address, prefix })) }];

test("lease first, then the guest agent; loopback and link-local left out; none known is []", async () => {
  const r = await f.m.create({ name: "a1", image: "debian-12", vcpus: 1, ramMB: 128, diskGB: 2 });
  assert.deepEqual(await guestAddresses(hv, r.domain), [], "no lease, no agent: unknown");
  hv.addresses.set(r.domain, { agent: iface(["127.0.0.1", 8], ["::1", 128], ["10.0.0.7", 24], ["fe80::5054:ff:fe00:1", 64], ["2001:db8::7", 64]) });
  assert.deepEqual(await guestAddresses(hv, r.domain), ["10.0.0.7/24", "2001:db8::7/64"]);
  hv.addresses.set(r.domain, { lease: iface(["192.168.122.50", 24]), agent: iface(["10.0.0.7", 24]) });
  assert.deepEqual(await guestAddresses(hv, r.domain), ["192.168.122.50/24"], "the lease wins");
  await f.m.stopVm("a1", { force: true });
  assert.deepEqual(await guestAddresses(hv, r.domain), [], "a stopped guest has none (libvirt refuses; not an error here)");
});

test("a guest agent that never answers costs the timeout, not the listing", async () => {
  const r = await f.m.create({ name: "a2", image: "debian-12", vcpus: 1, ramMB: 128, diskGB: 2 });
  hv.hang = true;
  try {
    const t0 = Date.now();
    assert.deepEqual(await guestAddresses(hv, r.domain, 200), []);
    assert.ok(Date.now() - t0 < 2000);
  } finally {
    hv.hang = false;
  }
});

test("vmService: listVms and getVm carry the running guests' addresses", async () => {
  const svc = vmService(f.m, { statsTimeoutMs: 1000 });
  const r = await f.m.create({ name: "a3", image: "debian-12", vcpus: 1, ramMB: 128, diskGB: 2 });
  hv.addresses.set(r.domain, { lease: iface(["192.168.122.61", 24]) });
  const call = {} as never;
  const { vms } = await svc.listVms({ node: "", local: false } as never, call);
  const a3 = vms?.find((v) => v.name === "a3");
  assert.deepEqual(a3?.ipAddresses, ["192.168.122.61/24"]);
  assert.deepEqual(vms?.find((v) => v.name === "a1")?.ipAddresses, [], "the stopped one: none");
  assert.deepEqual((await svc.getVm({ name: "a3" } as never, call)).vm?.ipAddresses, ["192.168.122.61/24"]);
});
