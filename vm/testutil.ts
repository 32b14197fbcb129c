/** Test helpers shared by vm/*.test.ts: a manager over a real LocalStore, images on disk. */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import type { Hypervisor } from "../hypervisor/index.js";
import { LocalStore } from "../store/index.js";
import { LocalImageStore } from "./images.js";
import { VmManager, type ManagerOptions, type VmRecord } from "./manager.js";

export interface Fixture { dir: string; store: LocalStore; images: LocalImageStore; m: VmManager; cleanup(): Promise<void> }

export async function fixture(hv: Hypervisor, over: Partial<ManagerOptions> = {}): Promise<Fixture> {
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-vm-"));
  const store = await LocalStore.open(path.join(dir, "data"));
  const images = new LocalImageStore(path.join(dir, "data", "images"));
  const m = new VmManager({
    hv, images, records: store.json<VmRecord>("vm"), vmDir: path.join(dir, "data", "vms"), node: "n1", domainType: "qemu",
    host: () => ({ cpus: 8, memoryBytes: 16 * 2 ** 30 }), loadFactor: 1, stopTimeoutMs: 300, defaultBridge: "br0",
    vlanMode: "vlan-aware", vlanBridgePattern: "{bridge}v{vlan}", ...over,
  });
  return {
    dir, store, images, m,
    async cleanup() { m.stop(); await store.close(); await rm(dir, { recursive: true, force: true }); },
  };
}

/** Imports a small qcow2 disk image and a kernel image (the host's kernel, or a stand-in file). */
export async function importImages(f: Fixture): Promise<void> {
  const q = path.join(f.dir, "base.qcow2");
  execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", q, "1G"]);
  const w = await f.images.begin("debian-12");
  const { readFile } = await import("node:fs/promises");
  await w.write("disk", await readFile(q));
  await w.commit();
  const k = path.join(f.dir, "vmlinuz");
  await writeFile(k, Buffer.alloc(4096, 7));
  const w2 = await f.images.begin("kern", { cmdline: "console=ttyS0" });
  await w2.write("kernel", await readFile(k));
  await w2.write("initrd", Buffer.from("initrd-bytes"));
  await w2.commit();
}

export const GPU_NODE_XML = `<node>
  <cpu><mhz>2000</mhz><model>i686</model><active>8</active><nodes>1</nodes><sockets>1</sockets><cores>8</cores><threads>1</threads></cpu>
  <memory>33554432</memory>
  ${[["3b", "0x20b0", "GA100 [A100 SXM4 40GB]"], ["5e", "0x2330", "GH100 [H100 SXM5 80GB]"], ["af", "0x2204", "GA102 [GeForce RTX 3090]"]].map(([bus, id, name]) => `
  <device>
    <name>pci_0000_${bus}_00_0</name>
    <parent>computer</parent>
    <capability type='pci'>
      <class>0x030200</class>
      <domain>0</domain><bus>${parseInt(bus!, 16)}</bus><slot>0</slot><function>0</function>
      <product id='${id}'>${name}</product>
      <vendor id='0x10de'>NVIDIA Corporation</vendor>
    </capability>
  </device>`).join("")}
  <device>
    <name>pci_0000_00_02_0</name>
    <parent>computer</parent>
    <capability type='pci'>
      <class>0x030000</class>
      <domain>0</domain><bus>0</bus><slot>2</slot><function>0</function>
      <product id='0x1111'/>
      <vendor id='0x1234'>QEMU</vendor>
    </capability>
  </device>
</node>
`;

export async function gpuDriverUri(dir: string): Promise<string> {
  const file = path.join(dir, "gpus.xml");
  await writeFile(file, GPU_NODE_XML);
  return `test://${file}`;
}
