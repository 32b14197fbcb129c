/** Domain XML: what it contains for each kind of VM, and that libvirt's own schema accepts it (virt-xml-validate). */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { validateSpec } from "./spec.js";
import { domainXml, parseThocMetadata, type DomainXmlInput } from "./xml.js";

const run = promisify(execFile);
const host = { cpus: 8, memoryBytes: 16 * 2 ** 30 };

async function validate(xml: string): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-xml-"));
  try {
    const f = path.join(dir, "d.xml");
    await writeFile(f, xml);
    const { stdout, stderr } = await run("virt-xml-validate", [f, "domain"]).catch((e: { stdout: string; stderr: string }) => {
      throw new Error(`virt-xml-validate rejected the XML:\n${e.stderr}${e.stdout}\n${xml}`);
    });
    assert.match(stdout + stderr, /validates/);
  } finally { await rm(dir, { recursive: true, force: true }); }
}

const base = (over: Partial<DomainXmlInput> = {}): DomainXmlInput => {
  const spec = validateSpec({ name: "web-1", image: "debian-12", vcpus: 2, ramMB: 2048, diskGB: 20, network: { ipAddress: "10.0.0.5/24", gateway: "10.0.0.1", vlanId: 100 } }, host, { bridge: "br0" });
  return {
    spec, uuid: "3f1c2a3b-1111-4222-8333-444455556666", domainType: "kvm", node: "n1", createdAt: 1700000000000,
    disk: "/var/lib/thoc/vms/web-1/disk.qcow2", seedIso: "/var/lib/thoc/vms/web-1/seed.iso", serialLog: "/var/lib/thoc/vms/web-1/serial.log",
    nic: { mac: "52:54:00:aa:bb:cc", bridge: "br0", tap: "thoc0123456789" }, gpus: [], metadataSpec: spec, ...over,
  };
};

test("KVM disk-image VM: virtio disk and NIC, seed ISO, serial log, VNC on localhost, metadata; schema-valid", async () => {
  const xml = domainXml(base());
  assert.match(xml, /^<domain type='kvm'>/);
  assert.match(xml, /<name>thoc-web-1<\/name>/);
  assert.match(xml, /<uuid>3f1c2a3b-1111-4222-8333-444455556666<\/uuid>/);
  assert.match(xml, /<memory unit='KiB'>2097152<\/memory>/);
  assert.match(xml, /<vcpu placement='static'>2<\/vcpu>/);
  assert.match(xml, /<cpu mode='host-passthrough'/);
  assert.match(xml, /<target dev='vda' bus='virtio'\/>/);
  assert.match(xml, /<model type='virtio'\/>/);
  assert.match(xml, /<source bridge='br0'\/>/);
  assert.match(xml, /<target dev='thoc0123456789'\/>/);
  assert.match(xml, /<log file='\/var\/lib\/thoc\/vms\/web-1\/serial.log' append='on'\/>/);
  assert.match(xml, /<graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'>/);
  assert.match(xml, /<device='cdrom'|device='cdrom'>/);
  assert.doesNotMatch(xml, /<vlan>/, "libvirt's <vlan> is Open vSwitch only: the tag is set on the tap instead");
  await validate(xml);
  const meta = parseThocMetadata(xml);
  assert.equal(meta?.name, "web-1");
  assert.equal(meta?.node, "n1");
  assert.equal((meta?.spec as { network: { vlanId: number } }).network.vlanId, 100);
});

test("TCG direct-kernel VM, no NIC: qemu domain, kernel/initrd/cmdline, no host-passthrough CPU; schema-valid", async () => {
  const spec = validateSpec({ name: "k", image: "bb", vcpus: 1, ramMB: 256, diskGB: 0, network: { mode: "none" } }, host, { bridge: "br0" });
  const xml = domainXml(base({ spec, domainType: "qemu", disk: undefined, seedIso: undefined, nic: undefined, kernel: { kernel: "/i/k", initrd: "/i/initrd", cmdline: "console=ttyS0 quiet & <x>" }, metadataSpec: spec }));
  assert.match(xml, /^<domain type='qemu'>/);
  assert.match(xml, /<kernel>\/i\/k<\/kernel>/);
  assert.match(xml, /<cmdline>console=ttyS0 quiet &amp; &lt;x&gt;<\/cmdline>/);
  assert.doesNotMatch(xml, /host-passthrough|<interface|<disk/);
  await validate(xml);
});

test("GPU passthrough and MIG hostdevs; schema-valid", async () => {
  const xml = domainXml(base({ gpus: [
    { vm: "web-1", mode: "passthrough", pciAddress: "0000:3b:00.0" },
    { vm: "web-1", mode: "mig", pciAddress: "0000:5e:00.0", migProfile: "1g.10gb", slices: 1, mdevUuid: "0b8d9e1c-2f3a-4b5c-8d6e-7f8091a2b3c4" },
  ] }));
  assert.match(xml, /<hostdev mode='subsystem' type='pci' managed='yes'>\s*<source>\s*<address domain='0x0000' bus='0x3b' slot='0x00' function='0x0'\/>/);
  assert.match(xml, /<hostdev mode='subsystem' type='mdev' model='vfio-pci' display='off'>\s*<source>\s*<address uuid='0b8d9e1c-2f3a-4b5c-8d6e-7f8091a2b3c4'\/>/);
  await validate(xml);
});

test("names and values are XML-escaped", () => {
  const spec = validateSpec({ name: "a", image: "i", vcpus: 1, ramMB: 64, diskGB: 1 }, host, { bridge: "br0" });
  const xml = domainXml(base({ spec, disk: "/d/it's<&>.qcow2", metadataSpec: { note: "</thoc:spec><evil/>" } }));
  assert.match(xml, /<source file='\/d\/it&apos;s&lt;&amp;&gt;.qcow2'\/>/);
  assert.doesNotMatch(xml, /<evil\/>/);
  assert.deepEqual(parseThocMetadata(xml)?.spec, { note: "</thoc:spec><evil/>" });
});
