/**
 * Hypervisor over libvirt's C library (see ffi.ts). One connection per
 * instance, kept alive with libvirt keepalive messages and reopened with
 * backoff when it drops (libvirtd restart); lifecycle events come from
 * libvirt's default event loop, run on a pool thread by eventloop.ts.
 */
import { ThocError } from "../errors/index.js";
import { eventLoop } from "./eventloop.js";
import { decodeStatsRecords, koffi, Libvirt, VIR, type Ptr } from "./ffi.js";
import { interfaceAddresses } from "./ifaddr.js";
import { parseSnapshotXml } from "./snapxml.js";
import { DOMAIN_STATES, LIFECYCLE_EVENTS, type AddressSource, type GuestInterface, type ConsoleStream, type DomainInfo, type HostCapabilities, type DomainStats, type Hypervisor, type LifecycleEvent, type SnapshotInfo } from "./types.js";

let shared: Libvirt | undefined;
/** koffi type names are process-wide: the callback prototype is declared once. */
let lifecycleProto: ReturnType<typeof koffi.proto> | undefined;
/** The process-wide library handle (error handler and event loop are process-wide in libvirt too). */
export function libvirt(): Libvirt {
  if (!shared) {
    shared = new Libvirt();
    shared.init();
  }
  return shared;
}

export interface LibvirtOptions {
  /** Keepalive interval in seconds and missed replies before the link is declared dead. */
  keepaliveInterval?: number;
  keepaliveCount?: number;
  /** Longest wait between reconnect attempts. */
  maxBackoffMs?: number;
  onReconnect?: () => void;
  onDisconnect?: (why: string) => void;
}

export class LibvirtHypervisor implements Hypervisor {
  private readonly lv = libvirt();
  private conn: Ptr | null = null;
  private eventCbId = -1;
  private eventFn?: bigint;
  private readonly listeners = new Set<(e: LifecycleEvent) => void>();
  private watchdog?: NodeJS.Timeout;
  private reconnecting?: Promise<void>;
  private closed = false;
  private err?: string;

  constructor(readonly uri: string, private readonly opts: LibvirtOptions = {}) {}

  connected(): boolean { return this.conn !== null; }
  lastError(): string | undefined { return this.err; }

  async open(): Promise<void> {
    this.closed = false;
    eventLoop(this.lv).retain();
    // Started even when the first attempt fails: the watchdog keeps trying until close().
    this.watchdog = setInterval(() => this.check(), 2000);
    this.watchdog.unref();
    await this.connect();
  }

  private async connect(): Promise<void> {
    const conn = await this.lv.call<Ptr | null>("virConnectOpen", this.uri);
    if (!conn) {
      const e = this.lv.error(`cannot connect to ${this.uri}`, null, "unavailable");
      this.err = e.message;
      throw new ThocError("unavailable", `${e.message}${this.uri.startsWith("qemu") ? " (is libvirtd running? test/boot/setup-libvirt.sh starts it)" : ""}`, e.details);
    }
    // Keepalive needs the event loop; the test driver has no keepalive support, which is fine.
    if (!this.uri.startsWith("test:")) {
      if (await this.lv.call<number>("virConnectSetKeepAlive", conn, this.opts.keepaliveInterval ?? 5, this.opts.keepaliveCount ?? 3) < 0) this.lv.connError(conn);
    }
    this.conn = conn;
    this.err = undefined;
    await this.registerEvents();
  }

  private async registerEvents(): Promise<void> {
    if (!this.conn) return;
    if (!this.eventFn) {
      lifecycleProto ??= koffi.proto("int thocVirDomainEventLifecycle(void *conn, void *dom, int event, int detail, void *opaque)");
      const proto = lifecycleProto;
      this.eventFn = koffi.register((_c: Ptr, dom: Ptr, event: number, detail: number) => {
        try {
          const name = this.lv.sync<string>("virDomainGetName", dom);
          const ev: LifecycleEvent = { name, event: LIFECYCLE_EVENTS[event] ?? "defined", detail };
          queueMicrotask(() => { for (const l of this.listeners) { try { l(ev); } catch { /* a listener's bug is its own */ } } });
        } catch { /* never throw into C */ }
        return 0;
      }, koffi.pointer(proto));
    }
    const id = await this.lv.call<number>("virConnectDomainEventRegisterAny", this.conn, null, VIR.DOMAIN_EVENT_ID_LIFECYCLE, this.eventFn, null, null);
    if (id < 0) this.lv.connError(this.conn);
    this.eventCbId = id;
  }

  /** Watchdog: a dead connection (libvirtd restarted, keepalive timed out) is reopened with backoff. */
  private check(): void {
    if (this.closed || this.reconnecting) return;
    if (this.conn && this.lv.sync<number>("virConnectIsAlive", this.conn) === 1) return;
    this.reconnecting = this.reconnect().finally(() => { this.reconnecting = undefined; });
  }

  private async reconnect(): Promise<void> {
    const old = this.conn;
    this.conn = null;
    if (old) {
      this.opts.onDisconnect?.("connection lost");
      this.lv.call("virConnectClose", old).catch(() => {});
    }
    let backoff = 250;
    while (!this.closed) {
      try {
        await this.connect();
        this.opts.onReconnect?.();
        return;
      } catch (err) {
        this.err = (err as Error).message;
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, this.opts.maxBackoffMs ?? 5000);
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.watchdog);
    await this.reconnecting;
    const conn = this.conn;
    this.conn = null;
    if (conn) {
      if (this.eventCbId >= 0) await this.lv.call("virConnectDomainEventDeregisterAny", conn, this.eventCbId).catch(() => {});
      this.eventCbId = -1;
      await this.lv.call("virConnectClose", conn).catch(() => {});
    }
    if (this.eventFn) { koffi.unregister(this.eventFn); this.eventFn = undefined; }
    eventLoop(this.lv).release();
    // An agent refused at start exits right after this: let the loop's last iteration end first (bounded).
    await eventLoop(this.lv).idle(1500);
  }

  private c(): Ptr {
    if (!this.conn) throw new ThocError("unavailable", `hypervisor ${this.uri} is not connected${this.err ? `: ${this.err}` : ""}; retrying in the background`);
    return this.conn;
  }

  async version(): Promise<string> {
    const v = [0];
    if (await this.lv.call<number>("virConnectGetLibVersion", this.c(), v) < 0) throw this.lv.error("virConnectGetLibVersion", this.conn);
    const n = Number(v[0]);
    return `libvirt ${Math.floor(n / 1_000_000)}.${Math.floor(n / 1000) % 1000}.${n % 1000}`;
  }

  /** Runs fn with a domain handle looked up by name, and frees it after. */
  private async withDomain<T>(name: string, fn: (dom: Ptr) => Promise<T>): Promise<T> {
    const conn = this.c();
    const dom = await this.lv.call<Ptr | null>("virDomainLookupByName", conn, name);
    if (!dom) throw this.lv.error(`domain ${name}`, conn, "not_found");
    try { return await fn(dom); } finally { this.lv.sync("virDomainFree", dom); }
  }

  private async info(dom: Ptr): Promise<DomainInfo> {
    const name = this.lv.sync<string>("virDomainGetName", dom);
    const buf = Buffer.alloc(37);
    this.lv.sync("virDomainGetUUIDString", dom, buf);
    const st = [0], reason = [0];
    // An RPC on a remote connection: on the async path like every call that talks to libvirtd.
    await this.lv.call("virDomainGetState", dom, st, reason, 0);
    return { name, uuid: buf.toString("utf8", 0, 36), state: DOMAIN_STATES[st[0]!] ?? "nostate" };
  }

  async define(xml: string): Promise<DomainInfo> {
    const conn = this.c();
    const dom = await this.lv.call<Ptr | null>("virDomainDefineXML", conn, xml);
    if (!dom) throw this.lv.error("define domain", conn, "invalid_argument");
    try { return await this.info(dom); } finally { this.lv.sync("virDomainFree", dom); }
  }

  async lookup(name: string): Promise<DomainInfo | undefined> {
    const conn = this.c();
    const dom = await this.lv.call<Ptr | null>("virDomainLookupByName", conn, name);
    if (!dom) {
      const e = this.lv.error(`domain ${name}`, conn, "not_found");
      if (e.code === "not_found") return undefined;
      throw e;
    }
    try { return await this.info(dom); } finally { this.lv.sync("virDomainFree", dom); }
  }

  async list(): Promise<DomainInfo[]> {
    const conn = this.c();
    const out: [Ptr | null] = [null];
    const n = await this.lv.call<number>("virConnectListAllDomains", conn, out, 0);
    if (n < 0) throw this.lv.error("list domains", conn);
    const doms = this.lv.takePointerArray(out[0], n);
    try {
      const out: DomainInfo[] = [];
      for (const d of doms) out.push(await this.info(d));
      return out;
    } finally { for (const d of doms) this.lv.sync("virDomainFree", d); }
  }

  xml(name: string, inactive = false): Promise<string> {
    return this.withDomain(name, async (dom) => {
      const p = await this.lv.call<Ptr | null>("virDomainGetXMLDesc", dom, inactive ? VIR.DOMAIN_XML_INACTIVE : 0);
      if (!p) throw this.lv.error(`XML of ${name}`, this.conn);
      return this.lv.takeString(p);
    });
  }

  private op(fnName: "virDomainCreate" | "virDomainShutdown" | "virDomainDestroy", what: string) {
    return (name: string) => this.withDomain(name, async (dom) => {
      if (await this.lv.call<number>(fnName, dom) < 0) throw this.lv.error(`${what} ${name}`, this.conn);
    });
  }
  readonly start = this.op("virDomainCreate", "start");
  readonly shutdown = this.op("virDomainShutdown", "shutdown");
  readonly destroy = this.op("virDomainDestroy", "destroy");

  undefine(name: string): Promise<void> {
    return this.withDomain(name, async (dom) => {
      const flags = VIR.DOMAIN_UNDEFINE_MANAGED_SAVE | VIR.DOMAIN_UNDEFINE_SNAPSHOTS_METADATA;
      if (await this.lv.call<number>("virDomainUndefineFlags", dom, flags) < 0) throw this.lv.error(`undefine ${name}`, this.conn);
    });
  }

  snapshotCreate(name: string, xml: string): Promise<string> {
    return this.withDomain(name, async (dom) => {
      const snap = await this.lv.call<Ptr | null>("virDomainSnapshotCreateXML", dom, xml, 0);
      if (!snap) throw this.lv.error(`snapshot of ${name}`, this.conn);
      try { return this.lv.sync<string>("virDomainSnapshotGetName", snap); } finally { this.lv.sync("virDomainSnapshotFree", snap); }
    });
  }

  snapshotList(name: string): Promise<SnapshotInfo[]> {
    return this.withDomain(name, async (dom) => {
      const out: [Ptr | null] = [null];
      const n = await this.lv.call<number>("virDomainListAllSnapshots", dom, out, 0);
      if (n < 0) throw this.lv.error(`snapshots of ${name}`, this.conn);
      const snaps = this.lv.takePointerArray(out[0], n);
      try {
        const res: SnapshotInfo[] = [];
        for (const s of snaps) res.push(parseSnapshotXml(this.lv.takeString(await this.lv.call<Ptr | null>("virDomainSnapshotGetXMLDesc", s, 0))));
        return res.sort((a, b) => a.createdAt - b.createdAt || a.name.localeCompare(b.name));
      } finally { for (const s of snaps) this.lv.sync("virDomainSnapshotFree", s); }
    });
  }

  private withSnapshot(name: string, snapshot: string, fn: (snap: Ptr) => Promise<void>): Promise<void> {
    return this.withDomain(name, async (dom) => {
      const snap = await this.lv.call<Ptr | null>("virDomainSnapshotLookupByName", dom, snapshot, 0);
      if (!snap) throw this.lv.error(`snapshot ${snapshot} of ${name}`, this.conn, "not_found");
      try { await fn(snap); } finally { this.lv.sync("virDomainSnapshotFree", snap); }
    });
  }

  snapshotRevert(name: string, snapshot: string): Promise<void> {
    return this.withSnapshot(name, snapshot, async (snap) => {
      if (await this.lv.call<number>("virDomainRevertToSnapshot", snap, 0) < 0) throw this.lv.error(`restore snapshot ${snapshot} of ${name}`, this.conn);
    });
  }

  snapshotDelete(name: string, snapshot: string): Promise<void> {
    return this.withSnapshot(name, snapshot, async (snap) => {
      if (await this.lv.call<number>("virDomainSnapshotDelete", snap, 0) < 0) throw this.lv.error(`delete snapshot ${snapshot} of ${name}`, this.conn);
    });
  }

  async stats(timeoutMs: number, names?: string[]): Promise<DomainStats[]> {
    const conn = this.c();
    const out: [Ptr | null] = [null];
    let timer: NodeJS.Timeout | undefined;
    // NOWAIT: skip a domain whose job lock is held (a VM stuck in a long job) instead of waiting on it.
    const call = this.lv.call<number>("virConnectGetAllDomainStats", conn, 0, out, VIR.CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT);
    const n = await Promise.race([call, new Promise<number>((_r, rej) => {
      timer = setTimeout(() => rej(new ThocError("deadline_exceeded", `domain stats took longer than ${timeoutMs} ms`)), timeoutMs);
    })]).finally(() => clearTimeout(timer));
    if (n < 0) throw this.lv.error("domain stats", conn);
    try {
      const recs = decodeStatsRecords(out[0], n);
      const res: DomainStats[] = [];
      for (const r of recs) {
        const name = this.lv.sync<string>("virDomainGetName", r.dom);
        if (names && !names.includes(name)) continue;
        res.push(toStats(name, r.params));
      }
      return res;
    } finally {
      if (out[0]) this.lv.sync("virDomainStatsRecordListFree", out[0]);
    }
  }

  openConsole(name: string): Promise<ConsoleStream> {
    return this.withDomain(name, async (dom) => {
      const conn = this.c();
      const st = this.lv.sync<Ptr | null>("virStreamNew", conn, VIR.STREAM_NONBLOCK);
      if (!st) throw this.lv.error("virStreamNew", conn);
      // FORCE: take the console over from a stale session (a CLI that was killed).
      if (await this.lv.call<number>("virDomainOpenConsole", dom, null, st, VIR.DOMAIN_CONSOLE_FORCE) < 0) {
        const e = this.lv.error(`console of ${name}`, conn);
        this.lv.sync("virStreamFree", st);
        throw e;
      }
      return new LibvirtConsole(this.lv, st, () => this.conn);
    });
  }

  interfaceAddresses(name: string, source: AddressSource): Promise<GuestInterface[]> {
    return this.withDomain(name, (dom) => interfaceAddresses(this.lv, this.c(), dom, name, source));
  }

  async hostCapabilities(): Promise<HostCapabilities> {
    const conn = this.c();
    const caps = this.lv.takeString(await this.lv.call<Ptr | null>("virConnectGetCapabilities", conn));
    if (!caps) throw this.lv.error("host capabilities", conn);
    // The domain capabilities answer only when the emulator can run the virt type: exactly the question.
    const dom = await this.lv.call<Ptr | null>("virConnectGetDomainCapabilities", conn, null, "x86_64", null, "kvm", 0);
    let kvm: HostCapabilities["kvm"];
    if (dom) { this.lv.takeString(dom); kvm = { available: true }; } else kvm = { available: false, why: this.lv.connError(conn)?.message ?? "libvirt gave no reason" };
    return { kvm, ...parseDacLabel(caps) };
  }

  async pciDevicesXml(): Promise<string[]> {
    const conn = this.c();
    const out: [Ptr | null] = [null];
    let n = await this.lv.call<number>("virConnectListAllNodeDevices", conn, out, VIR.CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV);
    // Drivers without capability filtering (the test driver) list everything; the caller filters by <capability type='pci'>.
    if (n < 0) { this.lv.connError(conn); n = await this.lv.call<number>("virConnectListAllNodeDevices", conn, out, 0); }
    if (n < 0) throw this.lv.error("list node devices", conn);
    const devs = this.lv.takePointerArray(out[0], n);
    try {
      const res: string[] = [];
      for (const d of devs) res.push(this.lv.takeString(await this.lv.call<Ptr | null>("virNodeDeviceGetXMLDesc", d, 0)));
      return res;
    } finally { for (const d of devs) this.lv.sync("virNodeDeviceFree", d); }
  }

  onLifecycle(cb: (e: LifecycleEvent) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }
}

/**
 * QEMU's uid and gid from the capabilities XML: <secmodel><model>dac</model>
 * <baselabel type='kvm'>+64055:+64055</baselabel>... (the same for every
 * domain type in practice; kvm's is read first, then any).
 */
export function parseDacLabel(caps: string): Pick<HostCapabilities, "qemu"> {
  for (const m of caps.matchAll(/<secmodel>([\s\S]*?)<\/secmodel>/g)) {
    const body = m[1]!;
    if (!/<model>\s*dac\s*<\/model>/.test(body)) continue;
    const labels = [...body.matchAll(/<baselabel type='([^']*)'>\+?(\d+):\+?(\d+)<\/baselabel>/g)];
    const l = labels.find((x) => x[1] === "kvm") ?? labels[0];
    if (l) return { qemu: { uid: Number(l[2]), gid: Number(l[3]) } };
  }
  return {};
}

function toStats(name: string, p: Record<string, number | string | boolean>): DomainStats {
  const n = (k: string) => (typeof p[k] === "number" ? (p[k] as number) : 0);
  let rx = 0, tx = 0, rd = 0, wr = 0;
  for (let i = 0; i < n("net.count"); i++) { rx += n(`net.${i}.rx.bytes`); tx += n(`net.${i}.tx.bytes`); }
  for (let i = 0; i < n("block.count"); i++) { rd += n(`block.${i}.rd.bytes`); wr += n(`block.${i}.wr.bytes`); }
  const usable = n("balloon.usable"), avail = n("balloon.available");
  return {
    name,
    state: DOMAIN_STATES[n("state.state")] ?? "nostate",
    cpuTimeNs: n("cpu.time"),
    vcpus: n("vcpu.current"),
    memoryKiB: n("balloon.current"),
    memoryUsedKiB: avail && usable ? avail - usable : n("balloon.rss"),
    netRxBytes: rx, netTxBytes: tx, blockReadBytes: rd, blockWriteBytes: wr,
    diskCapacityBytes: n("block.0.capacity"),
    diskAllocationBytes: n("block.0.allocation"),
  };
}

/**
 * A non-blocking virStream: reads poll on the async path (each read returns at
 * once, -2 when nothing is there), so a quiet console never holds a pool thread.
 */
class LibvirtConsole implements ConsoleStream {
  private done = false;
  /** Calls in flight on the stream: it is freed only when none is, never under a pool thread's feet. */
  private inflight = 0;
  constructor(private readonly lv: Libvirt, private readonly st: Ptr, private readonly conn: () => Ptr | null) {}

  private async io(fn: "virStreamSend" | "virStreamRecv", buf: Buffer): Promise<number> {
    this.inflight++;
    try { return await this.lv.call<number>(fn, this.st, buf, buf.length); } finally {
      this.inflight--;
      if (this.done && this.inflight === 0) this.release();
    }
  }

  async write(data: Uint8Array): Promise<void> {
    let off = 0;
    while (off < data.length && !this.done) {
      const n = await this.io("virStreamSend", Buffer.from(data.subarray(off)));
      if (n === -2) { await sleep(10); continue; }
      if (n < 0) { if (this.done) return; throw this.lv.error("console write", this.conn()); }
      off += n;
    }
  }

  async *output(): AsyncIterable<Uint8Array> {
    const buf = Buffer.alloc(64 * 1024);
    let idle = 5;
    try {
      while (!this.done) {
        const n = await this.io("virStreamRecv", buf);
        if (n === -2) { await sleep(idle); idle = Math.min(idle * 2, 50); continue; }
        if (n === 0 || this.done) break;
        if (n < 0) throw this.lv.error("console read", this.conn());
        idle = 5;
        yield Uint8Array.prototype.slice.call(buf, 0, n);
      }
    } finally {
      await this.close();
    }
  }

  private released = false;
  private release(): void {
    if (this.released) return;
    this.released = true;
    // Abort tells libvirtd (an RPC): async, then the handle is freed.
    void this.lv.call("virStreamAbort", this.st).catch(() => {}).finally(() => this.lv.sync("virStreamFree", this.st));
  }

  async close(): Promise<void> {
    if (this.done) return;
    this.done = true;
    if (this.inflight === 0) this.release();
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
