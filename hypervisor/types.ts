/**
 * The hypervisor seam: what the VM service needs from libvirt, as plain data.
 * Domains are addressed by their libvirt name. LibvirtHypervisor speaks to
 * libvirt.so.0; MemoryHypervisor is the in-memory stand-in beside it.
 */
export type DomainState = "nostate" | "running" | "blocked" | "paused" | "shutdown" | "shutoff" | "crashed" | "pmsuspended";

export const DOMAIN_STATES: readonly DomainState[] = ["nostate", "running", "blocked", "paused", "shutdown", "shutoff", "crashed", "pmsuspended"];

export interface DomainInfo {
  name: string;
  uuid: string;
  state: DomainState;
}

/** virDomainEventType names, in libvirt's order. */
export type LifecycleEventType = "defined" | "undefined" | "started" | "suspended" | "resumed" | "stopped" | "shutdown" | "pmsuspended" | "crashed";
export const LIFECYCLE_EVENTS: readonly LifecycleEventType[] = ["defined", "undefined", "started", "suspended", "resumed", "stopped", "shutdown", "pmsuspended", "crashed"];

export interface LifecycleEvent {
  name: string;
  event: LifecycleEventType;
  detail: number;
}

export interface SnapshotInfo {
  name: string;
  description: string;
  /** Unix seconds, from the snapshot XML's creationTime. */
  createdAt: number;
  /** Domain state when taken (running, shutoff...). */
  state: string;
}

export interface DomainStats {
  name: string;
  state: DomainState;
  cpuTimeNs: number;
  vcpus: number;
  /** Current balloon size (guest memory) in KiB. */
  memoryKiB: number;
  /** Guest-reported RSS/usable where the balloon driver reports it, else 0. */
  memoryUsedKiB: number;
  netRxBytes: number;
  netTxBytes: number;
  blockReadBytes: number;
  blockWriteBytes: number;
  /** Capacity and allocation of the first disk, in bytes. */
  diskCapacityBytes: number;
  diskAllocationBytes: number;
}

/**
 * Where a guest's addresses come from (virDomainInterfaceAddresses): "lease",
 * the DHCP leases of libvirt's own networks; "agent", the QEMU guest agent in
 * the guest (any network, static addresses too, but only with the agent).
 */
export type AddressSource = "lease" | "agent";

export interface GuestInterface {
  name: string;
  mac: string;
  addresses: { type: "ipv4" | "ipv6"; address: string; prefix: number }[];
}

/** A serial console: bytes in, bytes out, until close() or the domain stops. */
export interface ConsoleStream {
  write(data: Uint8Array): Promise<void>;
  /** Yields output as it arrives; ends when the stream closes. */
  output(): AsyncIterable<Uint8Array>;
  close(): Promise<void>;
}

/** What the host's hypervisor can do and who its guests run as, read from libvirt at connect. */
export interface HostCapabilities {
  /**
   * Whether x86_64 guests can use KVM (libvirt's domain capabilities for virttype kvm);
   * why not, in libvirt's words, when they cannot.
   */
  kvm: { available: boolean; why?: string };
  /**
   * The user and group QEMU runs as: libvirt's DAC base label (qemu.conf user/group,
   * e.g. libvirt-qemu). Absent when libvirt has no DAC label (the test driver, a
   * security driver without it): then nothing on this host needs QEMU to reach our files.
   */
  qemu?: { uid: number; gid: number };
}

export interface Hypervisor {
  readonly uri: string;
  /** Opens the connection (and keeps it: keepalive, automatic reconnect). */
  open(): Promise<void>;
  close(): Promise<void>;
  /** True while connected; a reconnect loop runs otherwise. */
  connected(): boolean;
  /** Why the last connection attempt failed, when not connected. */
  lastError(): string | undefined;
  /** "libvirt 9.0.0". */
  version(): Promise<string>;

  define(xml: string): Promise<DomainInfo>;
  lookup(name: string): Promise<DomainInfo | undefined>;
  list(): Promise<DomainInfo[]>;
  xml(name: string, inactive?: boolean): Promise<string>;
  start(name: string): Promise<void>;
  /** ACPI shutdown request: returns at once, the guest decides when to stop. */
  shutdown(name: string): Promise<void>;
  /** Hard power-off. */
  destroy(name: string): Promise<void>;
  /** Removes the definition and its snapshot metadata (the domain must be shut off). */
  undefine(name: string): Promise<void>;

  snapshotCreate(name: string, xml: string): Promise<string>;
  snapshotList(name: string): Promise<SnapshotInfo[]>;
  snapshotRevert(name: string, snapshot: string): Promise<void>;
  snapshotDelete(name: string, snapshot: string): Promise<void>;

  /** Stats of every domain (or the named ones); never waits longer than timeoutMs. */
  stats(timeoutMs: number, names?: string[]): Promise<DomainStats[]>;
  openConsole(name: string): Promise<ConsoleStream>;
  /** KVM availability and QEMU's identity (see HostCapabilities). */
  hostCapabilities(): Promise<HostCapabilities>;
  /** XML of the host's PCI node devices (virConnectListAllNodeDevices, CAP_PCI_DEV). */
  pciDevicesXml(): Promise<string[]>;
  /**
   * A running guest's interfaces and addresses from `source`. Throws
   * "unimplemented" when the driver cannot tell (libvirt's test driver), and
   * libvirt's error when the source has nothing to ask (no guest agent).
   */
  interfaceAddresses(name: string, source: AddressSource): Promise<GuestInterface[]>;
  /** Subscribes to lifecycle events; returns the unsubscribe function. */
  onLifecycle(cb: (e: LifecycleEvent) => void): () => void;
}
