/**
 * An in-memory Hypervisor: domains, states, snapshots, events and consoles
 * kept in maps, for tests of code above the seam and for machines without
 * libvirt. Domain XML is parsed for name and uuid only.
 */
import { randomUUID } from "node:crypto";
import { ThocError } from "../errors/index.js";
import type { AddressSource, GuestInterface, ConsoleStream, DomainInfo, HostCapabilities, DomainStats, DomainState, Hypervisor, LifecycleEvent, LifecycleEventType, SnapshotInfo } from "./types.js";

interface MemDomain { name: string; uuid: string; xml: string; state: DomainState; snapshots: Map<string, SnapshotInfo & { runState: DomainState }>; consoles: Set<MemConsole> }

export class MemoryHypervisor implements Hypervisor {
  private readonly domains = new Map<string, MemDomain>();
  private readonly listeners = new Set<(e: LifecycleEvent) => void>();
  private open_ = false;
  /**
   * What interfaceAddresses answers, per domain and source, set by tests: a
   * guest that got a lease, one that only its agent can describe. Unset: none.
   */
  readonly addresses = new Map<string, Partial<Record<AddressSource, GuestInterface[]>>>();
  /** The guest's reaction to an ACPI shutdown: "obey" stops it, "ignore" leaves it running. */
  acpi: "obey" | "ignore" = "obey";

  constructor(readonly uri = "memory:///", private readonly pciXml: string[] = []) {}

  async open(): Promise<void> { this.open_ = true; }
  async close(): Promise<void> { this.open_ = false; }
  connected(): boolean { return this.open_; }
  lastError(): string | undefined { return undefined; }
  async version(): Promise<string> { return "memory 1.0.0"; }

  private get(name: string): MemDomain {
    if (!this.open_) throw new ThocError("unavailable", `hypervisor ${this.uri} is not connected`);
    const d = this.domains.get(name);
    if (!d) throw new ThocError("not_found", `domain ${name}: Domain not found`);
    return d;
  }

  private emit(name: string, event: LifecycleEventType): void {
    const e = { name, event, detail: 0 };
    queueMicrotask(() => { for (const l of this.listeners) l(e); });
  }

  private set(d: MemDomain, state: DomainState, event: LifecycleEventType): void {
    d.state = state;
    this.emit(d.name, event);
    if (state === "shutoff") for (const c of d.consoles) c.end();
  }

  async define(xml: string): Promise<DomainInfo> {
    if (!this.open_) throw new ThocError("unavailable", `hypervisor ${this.uri} is not connected`);
    const name = /<name>([^<]+)<\/name>/.exec(xml)?.[1];
    if (!name) throw new ThocError("invalid_argument", "define domain: XML error: missing <name>");
    const uuid = /<uuid>([^<]+)<\/uuid>/.exec(xml)?.[1] ?? randomUUID();
    const old = this.domains.get(name);
    if (old && old.uuid !== uuid) throw new ThocError("already_exists", `define domain: domain '${name}' already exists with uuid ${old.uuid}`);
    const d: MemDomain = old ?? { name, uuid, xml, state: "shutoff", snapshots: new Map(), consoles: new Set() };
    d.xml = xml;
    this.domains.set(name, d);
    this.emit(name, "defined");
    return this.info(d);
  }

  private info(d: MemDomain): DomainInfo { return { name: d.name, uuid: d.uuid, state: d.state }; }

  async lookup(name: string): Promise<DomainInfo | undefined> {
    const d = this.domains.get(name);
    return d ? this.info(d) : undefined;
  }
  async list(): Promise<DomainInfo[]> { return [...this.domains.values()].map((d) => this.info(d)); }
  async xml(name: string): Promise<string> { return this.get(name).xml; }

  async start(name: string): Promise<void> {
    const d = this.get(name);
    if (d.state === "running") throw new ThocError("failed_precondition", `start ${name}: Requested operation is not valid: domain is already running`);
    this.set(d, "running", "started");
  }
  async shutdown(name: string): Promise<void> {
    const d = this.get(name);
    if (d.state !== "running") throw new ThocError("failed_precondition", `shutdown ${name}: Requested operation is not valid: domain is not running`);
    if (this.acpi === "obey") setTimeout(() => { if (d.state === "running") this.set(d, "shutoff", "stopped"); }, 5);
  }
  async destroy(name: string): Promise<void> {
    const d = this.get(name);
    if (d.state !== "running" && d.state !== "paused") throw new ThocError("failed_precondition", `destroy ${name}: Requested operation is not valid: domain is not running`);
    this.set(d, "shutoff", "stopped");
  }
  async undefine(name: string): Promise<void> {
    const d = this.get(name);
    if (d.state === "running") throw new ThocError("failed_precondition", `undefine ${name}: domain is running`);
    this.domains.delete(name);
    this.emit(name, "undefined");
  }

  async snapshotCreate(name: string, xml: string): Promise<string> {
    const d = this.get(name);
    const snap = /<name>([^<]+)<\/name>/.exec(xml)?.[1] ?? String(Math.floor(Date.now() / 1000));
    if (d.snapshots.has(snap)) throw new ThocError("already_exists", `snapshot of ${name}: snapshot '${snap}' already exists`);
    const description = /<description>([^<]*)<\/description>/.exec(xml)?.[1] ?? "";
    d.snapshots.set(snap, { name: snap, description, createdAt: Math.floor(Date.now() / 1000), state: d.state, runState: d.state });
    return snap;
  }
  async snapshotList(name: string): Promise<SnapshotInfo[]> {
    return [...this.get(name).snapshots.values()].map(({ runState: _r, ...s }) => s);
  }
  async snapshotRevert(name: string, snapshot: string): Promise<void> {
    const d = this.get(name);
    const s = d.snapshots.get(snapshot);
    if (!s) throw new ThocError("not_found", `snapshot ${snapshot} of ${name}: Domain snapshot not found`);
    if (d.state !== s.runState) this.set(d, s.runState, s.runState === "running" ? "started" : "stopped");
  }
  async snapshotDelete(name: string, snapshot: string): Promise<void> {
    const d = this.get(name);
    if (!d.snapshots.delete(snapshot)) throw new ThocError("not_found", `snapshot ${snapshot} of ${name}: Domain snapshot not found`);
  }

  async stats(_timeoutMs: number, names?: string[]): Promise<DomainStats[]> {
    return [...this.domains.values()].filter((d) => !names || names.includes(d.name)).map((d) => ({
      name: d.name, state: d.state, cpuTimeNs: d.state === "running" ? 1_000_000 : 0, vcpus: Number(/<vcpu[^>]*>(\d+)</.exec(d.xml)?.[1] ?? 1),
      memoryKiB: Number(/<memory unit='KiB'>(\d+)</.exec(d.xml)?.[1] ?? 0), memoryUsedKiB: 0,
      netRxBytes: 0, netTxBytes: 0, blockReadBytes: 0, blockWriteBytes: 0, diskCapacityBytes: 0, diskAllocationBytes: 0,
    }));
  }

  async openConsole(name: string): Promise<ConsoleStream> {
    const d = this.get(name);
    if (d.state !== "running") throw new ThocError("failed_precondition", `console of ${name}: domain is not running`);
    const c = new MemConsole(() => d.consoles.delete(c));
    d.consoles.add(c);
    return c;
  }

  /** Test hook: the guest writes text on its serial console. */
  guestWrites(name: string, text: string): void {
    for (const c of this.get(name).consoles) c.push(Buffer.from(text));
  }

  async interfaceAddresses(name: string, source: AddressSource): Promise<GuestInterface[]> {
    const d = this.get(name);
    if (d.state !== "running") throw new ThocError("failed_precondition", `addresses of ${name}: Requested operation is not valid: domain is not running`);
    const got = this.addresses.get(name)?.[source];
    // As libvirt: no guest agent is an error, no lease is an empty answer.
    if (!got && source === "agent") throw new ThocError("unavailable", `addresses of ${name}: Guest agent is not responding: QEMU guest agent is not connected`);
    return structuredClone(got ?? []);
  }
  async pciDevicesXml(): Promise<string[]> { return [...this.pciXml]; }

  /** No QEMU behind it: no KVM, and nobody else needs to read the VM files. */
  async hostCapabilities(): Promise<HostCapabilities> { return { kvm: { available: false, why: "the in-memory hypervisor runs no guests" } }; }

  onLifecycle(cb: (e: LifecycleEvent) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }
}

/** Echoes what is typed (as a serial getty would) and carries guestWrites() output. */
class MemConsole implements ConsoleStream {
  private queue: Uint8Array[] = [];
  private wake?: () => void;
  private ended = false;
  constructor(private readonly onClose: () => void) {}
  push(b: Uint8Array): void { this.queue.push(b); this.wake?.(); }
  end(): void { this.ended = true; this.wake?.(); }
  async write(data: Uint8Array): Promise<void> { if (!this.ended) this.push(Uint8Array.prototype.slice.call(data)); }
  async *output(): AsyncIterable<Uint8Array> {
    while (true) {
      while (this.queue.length) yield this.queue.shift()!;
      if (this.ended) break;
      await new Promise<void>((r) => { this.wake = r; });
      this.wake = undefined;
    }
    this.onClose();
  }
  async close(): Promise<void> { this.end(); }
}
