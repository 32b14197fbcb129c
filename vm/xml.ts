/**
 * libvirt domain XML from a VM spec: name thoc-<name>, a fixed uuid, THOC
 * metadata in its own namespace (so a restarted agent can adopt the domain),
 * virtio disk and NIC, a serial console logged by virtlogd, VNC on localhost.
 */
import type { GpuAllocation } from "./gpu.js";
import type { VmSpec } from "./spec.js";

export const DOMAIN_PREFIX = "thoc-";
export const THOC_NS = "https://thoc.dev/xmlns/libvirt/vm/1";

export const domainName = (vm: string) => `${DOMAIN_PREFIX}${vm}`;

export function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&apos;");
}

export interface DomainXmlInput {
  spec: VmSpec;
  uuid: string;
  domainType: "kvm" | "qemu" | "test";
  node: string;
  createdAt: number;
  /** Overlay disk (qcow2); absent for a diskless kernel VM. */
  disk?: string;
  seedIso?: string;
  kernel?: { kernel: string; initrd?: string; cmdline: string };
  serialLog?: string;
  nic?: { mac: string; bridge: string; tap: string };
  gpus: GpuAllocation[];
  /** The spec without secrets, kept in the metadata for adoption after an agent restart. */
  metadataSpec: unknown;
}

function pciAddressXml(pci: string): string {
  const m = /^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/i.exec(pci);
  if (!m) throw new Error(`bad PCI address ${pci}`);
  return `<address domain='0x${m[1]}' bus='0x${m[2]}' slot='0x${m[3]}' function='0x${m[4]}'/>`;
}

export function domainXml(d: DomainXmlInput): string {
  const s = d.spec;
  const L: string[] = [];
  const dev = (x: string) => L.push(`    ${x}`);
  L.push(`<domain type='${d.domainType}'>`);
  L.push(`  <name>${esc(domainName(s.name))}</name>`);
  L.push(`  <uuid>${d.uuid}</uuid>`);
  L.push(`  <title>${esc(s.name)}</title>`);
  L.push(`  <metadata>`);
  L.push(`    <thoc:vm xmlns:thoc='${THOC_NS}'>`);
  L.push(`      <thoc:name>${esc(s.name)}</thoc:name>`);
  L.push(`      <thoc:node>${esc(d.node)}</thoc:node>`);
  L.push(`      <thoc:created>${d.createdAt}</thoc:created>`);
  L.push(`      <thoc:spec>${esc(JSON.stringify(d.metadataSpec))}</thoc:spec>`);
  L.push(`    </thoc:vm>`);
  L.push(`  </metadata>`);
  L.push(`  <memory unit='KiB'>${s.ramMB * 1024}</memory>`);
  L.push(`  <currentMemory unit='KiB'>${s.ramMB * 1024}</currentMemory>`);
  L.push(`  <vcpu placement='static'>${s.vcpus}</vcpu>`);
  L.push(`  <os>`);
  L.push(d.domainType === "test" ? `    <type arch='x86_64'>hvm</type>` : `    <type arch='x86_64' machine='q35'>hvm</type>`);
  if (d.kernel) {
    L.push(`    <kernel>${esc(d.kernel.kernel)}</kernel>`);
    if (d.kernel.initrd) L.push(`    <initrd>${esc(d.kernel.initrd)}</initrd>`);
    if (d.kernel.cmdline) L.push(`    <cmdline>${esc(d.kernel.cmdline)}</cmdline>`);
  } else {
    L.push(`    <boot dev='hd'/>`);
  }
  L.push(`  </os>`);
  L.push(`  <features>`, `    <acpi/>`, `    <apic/>`, `  </features>`);
  // host-passthrough gives the guest the host CPU under KVM; TCG cannot emulate "host", so it keeps QEMU's default model.
  if (d.domainType === "kvm") L.push(`  <cpu mode='host-passthrough' check='none' migratable='on'/>`);
  L.push(`  <clock offset='utc'/>`);
  L.push(`  <on_poweroff>destroy</on_poweroff>`, `  <on_reboot>restart</on_reboot>`, `  <on_crash>destroy</on_crash>`);
  L.push(`  <devices>`);
  if (d.disk) {
    dev(`<disk type='file' device='disk'>`);
    dev(`  <driver name='qemu' type='qcow2' discard='unmap'/>`);
    dev(`  <source file='${esc(d.disk)}'/>`);
    dev(`  <target dev='vda' bus='virtio'/>`);
    dev(`</disk>`);
  }
  if (d.seedIso) {
    dev(`<disk type='file' device='cdrom'>`);
    dev(`  <driver name='qemu' type='raw'/>`);
    dev(`  <source file='${esc(d.seedIso)}'/>`);
    dev(`  <target dev='sda' bus='sata'/>`);
    dev(`  <readonly/>`);
    dev(`</disk>`);
  }
  if (d.nic) {
    dev(`<interface type='bridge'>`);
    dev(`  <mac address='${d.nic.mac}'/>`);
    dev(`  <source bridge='${esc(d.nic.bridge)}'/>`);
    dev(`  <target dev='${esc(d.nic.tap)}'/>`);
    dev(`  <model type='virtio'/>`);
    dev(`</interface>`);
  }
  dev(`<serial type='pty'>`);
  if (d.serialLog) dev(`  <log file='${esc(d.serialLog)}' append='on'/>`);
  dev(`  <target port='0'/>`);
  dev(`</serial>`);
  dev(`<console type='pty'>`);
  dev(`  <target type='serial' port='0'/>`);
  dev(`</console>`);
  dev(`<graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'>`);
  dev(`  <listen type='address' address='127.0.0.1'/>`);
  dev(`</graphics>`);
  if (d.domainType !== "test") dev(`<video>`), dev(`  <model type='vga' vram='16384' heads='1' primary='yes'/>`), dev(`</video>`);
  for (const g of d.gpus) {
    if (g.mode === "passthrough") {
      dev(`<hostdev mode='subsystem' type='pci' managed='yes'>`);
      dev(`  <source>`);
      dev(`    ${pciAddressXml(g.pciAddress)}`);
      dev(`  </source>`);
      dev(`</hostdev>`);
    } else {
      // A MIG slice is a mediated device the NVIDIA vGPU host driver creates (docs/vms.md).
      dev(`<hostdev mode='subsystem' type='mdev' model='vfio-pci' display='off'>`);
      dev(`  <source>`);
      dev(`    <address uuid='${g.mdevUuid}'/>`);
      dev(`  </source>`);
      dev(`</hostdev>`);
    }
  }
  if (d.domainType !== "test") dev(`<memballoon model='virtio'/>`), dev(`<rng model='virtio'>`), dev(`  <backend model='random'>/dev/urandom</backend>`), dev(`</rng>`);
  L.push(`  </devices>`);
  L.push(`</domain>`);
  return L.join("\n") + "\n";
}

/** The metadata a THOC domain carries, read back when adopting it. */
export function parseThocMetadata(xml: string): { name: string; node: string; createdAt: number; spec: unknown } | undefined {
  const block = /<thoc:vm[^>]*>([\s\S]*?)<\/thoc:vm>/.exec(xml)?.[1];
  if (!block) return undefined;
  const get = (tag: string) => /<thoc:TAG>([\s\S]*?)<\/thoc:TAG>/.source.replace(/TAG/g, tag);
  const val = (tag: string) => unesc(new RegExp(get(tag)).exec(block)?.[1] ?? "");
  let spec: unknown;
  try { spec = JSON.parse(val("spec")); } catch { spec = undefined; }
  return { name: val("name"), node: val("node"), createdAt: Number(val("created")) || 0, spec };
}

function unesc(s: string): string {
  return s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, "&");
}
