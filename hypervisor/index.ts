/**
 * The hypervisor seam: libvirt through koffi (LibvirtHypervisor), and an
 * in-memory stand-in (MemoryHypervisor) with the same interface.
 */
export type { Hypervisor, AddressSource, GuestInterface, HostCapabilities, DomainInfo, DomainState, DomainStats, LifecycleEvent, LifecycleEventType, SnapshotInfo, ConsoleStream } from "./types.js";
export { DOMAIN_STATES } from "./types.js";
export { LibvirtHypervisor, libvirt, parseDacLabel, type LibvirtOptions } from "./libvirt.js";
export { MemoryHypervisor } from "./memory.js";

import type { Hypervisor } from "./types.js";
import { LibvirtHypervisor, type LibvirtOptions } from "./libvirt.js";
import { MemoryHypervisor } from "./memory.js";

/** memory:/// gives the in-memory hypervisor; anything else is a libvirt URI. */
export function openHypervisor(uri: string, opts?: LibvirtOptions): Hypervisor {
  return uri.startsWith("memory:") ? new MemoryHypervisor(uri) : new LibvirtHypervisor(uri, opts);
}
