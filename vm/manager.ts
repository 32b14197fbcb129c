/**
 * VmManager: the VMs of this node. Records live in the local store (sublevel
 * "vm"); libvirt holds the domains. Create validates everything before it
 * touches anything and undoes every step it took when a later one fails, so
 * a refused or failed request leaves nothing behind. Status follows libvirt
 * lifecycle events; on start the manager reconciles with libvirt (adopts
 * running thoc- domains it has no record of, marks vanished ones missing).
 */
import { randomUUID } from "node:crypto";
import { rm } from "node:fs/promises";
import path from "node:path";
import { ThocError } from "../errors/index.js";
import type { DomainState, Hypervisor, LifecycleEvent } from "../hypervisor/index.js";
import { buildSeedIso, hashPassword } from "./cloudinit.js";
import { createOverlay } from "./disks.js";
import { fit, fitError, type Reservation } from "./fit.js";
import { parseGpus, type GpuAllocation, type HostGpu } from "./gpu.js";
import { QemuAccess } from "./access.js";
import type { ImageRecord, ImageStore } from "./images.js";
import { applyVlan, bridgeFor, macFor, tapName, type VlanMode } from "./network.js";
import { validateSpec, type HostLimits, type VmSpec, type VmSpecInput } from "./spec.js";
import { DOMAIN_PREFIX, domainName, domainXml, parseThocMetadata } from "./xml.js";

export type VmStatus = "creating" | "running" | "stopping" | "stopped" | "paused" | "crashed" | "missing" | "error" | "unknown";

export interface VmRecord {
  name: string;
  uuid: string;
  domain: string;
  status: VmStatus;
  /** As created, with the password removed. */
  spec: VmSpec;
  passwordSet: boolean;
  node: string;
  createdAt: number;
  mac: string;
  tap: string;
  imageKind: "disk" | "kernel";
  gpus: GpuAllocation[];
  detail: string;
  /** Anti-affinity group given at create ("" or absent: none). */
  group?: string;
  /** The create's request id: a retried create with the same id answers with this VM. */
  requestId?: string;
  /**
   * What the API last asked for: running (create, start, restart) or stopped
   * (vm stop, create --no-start). Only a user's stop makes it stopped: a guest
   * that died with its host, libvirtd or a kill still wants to run, and the
   * agent starts it at its next start when spec.autostart is on (autostart.ts).
   */
  desired?: "running" | "stopped";
  /** Why the agent's last autostart of this VM failed; cleared by the next start or stop. */
  autostartError?: string;
}

/** The store's surface the manager needs (a LocalStore json sublevel fits). */
export interface RecordStore {
  get(key: string): Promise<VmRecord | undefined>;
  put(key: string, value: VmRecord): Promise<void>;
  del(key: string): Promise<void>;
  values(): AsyncIterable<VmRecord>;
}

export interface ManagerOptions {
  hv: Hypervisor;
  images: ImageStore;
  records: RecordStore;
  /** <dataDir>/vms: one directory per VM (overlay, seed ISO, serial log). */
  vmDir: string;
  node: string;
  /** kvm or qemu (TCG); the subsystem resolves vm.domainType auto from libvirt (hostReady) and may pass a getter. */
  domainType: "kvm" | "qemu";
  /**
   * Resolves once the subsystem knows the host (KVM or not, QEMU's identity);
   * awaited before a create makes files or picks a domain type.
   */
  hostReady?: () => Promise<void>;
  /** Who besides the agent reads VM files (QEMU's group; vm/access.ts); default: nobody. */
  access?: QemuAccess;
  host: () => HostLimits;
  /** Fraction of host memory VMs may be given in total (limits.loadFactor). */
  loadFactor: number;
  stopTimeoutMs: number;
  defaultBridge: string;
  vlanMode: VlanMode;
  vlanBridgePattern: string;
  log?: { info(o: object, m: string): void; warn(o: object, m: string): void };
  /**
   * Called after a record changed on disk (created, status changed, deleted:
   * `now` undefined), with what it was before and who caused it. The VM
   * events and the cluster-wide VM table follow it; it must not throw.
   */
  onChange?: (change: VmChange) => void;
  /**
   * What other workloads of this node hold (containers: the GPU ledger and
   * the CPU/RAM budget VMs share with them); counted by every admission.
   */
  foreignReservations?: () => Promise<Reservation[]>;
}

/** Who made a VM change: an API call, the scheduler leader, libvirt (the guest or virsh), or reconciliation at start. */
export type VmTrigger = "user" | "scheduler" | "libvirt" | "reconcile" | "autostart";

export interface VmChange { name: string; now?: VmRecord; previous?: VmRecord; by: VmTrigger }

export const stateToStatus = (s: DomainState): VmStatus =>
  s === "running" || s === "blocked" ? "running" : s === "paused" || s === "pmsuspended" ? "paused" : s === "shutdown" ? "stopping" : s === "shutoff" ? "stopped" : s === "crashed" ? "crashed" : "unknown";

/** What a VM holds of its node, as fit() counts it. */
const reservationOf = (r: VmRecord): Reservation => ({ name: r.name, vcpus: r.spec.vcpus, ramMB: r.spec.ramMB, gpus: r.gpus });

export class VmManager {
  private readonly busy = new Set<string>();
  private chain: Promise<unknown> = Promise.resolve();
  private gpuCache?: { at: number; gpus: HostGpu[] };
  private unsubscribe?: () => void;

  private readonly access: QemuAccess;

  constructor(readonly o: ManagerOptions) {
    this.access = o.access ?? new QemuAccess();
  }

  /** The hypervisor's domain type for this connection (the test driver only knows 'test'). */
  private get domainType(): "kvm" | "qemu" | "test" {
    return /^(test|memory):/.test(this.o.hv.uri) ? "test" : this.o.domainType;
  }
  private get realHost(): boolean { return !/^(test|memory):/.test(this.o.hv.uri); }

  dirOf(name: string): string { return path.join(this.o.vmDir, name); }
  serialLog(name: string): string { return path.join(this.dirOf(name), "serial.log"); }

  async start(): Promise<void> {
    await this.access.dir(this.o.vmDir);
    this.unsubscribe = this.o.hv.onLifecycle((e) => { void this.onEvent(e); });
    if (this.o.hv.connected()) await this.reconcile();
  }

  stop(): void { this.unsubscribe?.(); }

  async list(): Promise<VmRecord[]> {
    const out: VmRecord[] = [];
    for await (const r of this.o.records.values()) out.push(r);
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  async get(name: string): Promise<VmRecord> {
    const r = await this.o.records.get(name);
    if (!r) throw new ThocError("not_found", `no VM named ${name} on this node (thoc-node vm list)`, { vm: name });
    return r;
  }

  private async save(r: VmRecord, by: VmTrigger = "user"): Promise<VmRecord> {
    const previous = this.o.onChange ? await this.o.records.get(r.name) : undefined;
    await this.o.records.put(r.name, r);
    this.changed({ name: r.name, now: r, previous, by });
    return r;
  }

  private async remove(r: VmRecord, by: VmTrigger): Promise<void> {
    await this.o.records.del(r.name);
    this.changed({ name: r.name, previous: r, by });
  }

  private changed(c: VmChange): void {
    try { this.o.onChange?.(c); } catch (err) { this.o.log?.warn({ err, vm: c.name }, "VM change listener failed"); }
  }

  private async setStatus(name: string, status: VmStatus, detail = "", by: VmTrigger = "libvirt"): Promise<VmRecord | undefined> {
    const r = await this.o.records.get(name);
    if (!r || (r.status === status && r.detail === detail)) return r;
    return this.save({ ...r, status, detail }, by);
  }

  private async onEvent(e: LifecycleEvent): Promise<void> {
    if (!e.name.startsWith(DOMAIN_PREFIX)) return;
    const name = e.name.slice(DOMAIN_PREFIX.length);
    if (this.busy.has(name)) return;
    try {
      const r = await this.o.records.get(name);
      if (!r || r.status === "creating") return;
      if (e.event === "undefined") { await this.setStatus(name, "missing", "the libvirt domain was undefined outside thoc-node"); return; }
      const d = await this.o.hv.lookup(r.domain);
      if (d) await this.setStatus(name, stateToStatus(d.state));
      if (e.event === "started" && this.realHost) await this.applyNetwork(r).catch((err) => this.o.log?.warn({ err, vm: name }, "VLAN setup failed"));
    } catch (err) {
      this.o.log?.warn({ err, vm: name }, "lifecycle event handling failed");
    }
  }

  /** Brings records in line with libvirt after a (re)start or reconnect. */
  async reconcile(): Promise<{ adopted: string[]; missing: string[] }> {
    const domains = new Map((await this.o.hv.list()).filter((d) => d.name.startsWith(DOMAIN_PREFIX)).map((d) => [d.name, d]));
    const adopted: string[] = [], missing: string[] = [];
    for (const r of await this.list()) {
      if (this.busy.has(r.name)) continue;
      const d = domains.get(r.domain);
      domains.delete(r.domain);
      if (!d) {
        if (r.status !== "missing") { missing.push(r.name); await this.setStatus(r.name, "missing", r.status === "creating" ? "creation was interrupted: delete it and create again" : "the libvirt domain is gone: delete the VM or recreate it", "reconcile"); }
      } else {
        await this.setStatus(r.name, stateToStatus(d.state), "", "reconcile");
      }
      // A record from before desired existed: the status it kept is the last the agent saw, so "running" means the
      // VM ran until the agent or its host went away. Written now, before reconcile's status loses that.
      if (!r.desired) { const now = await this.o.records.get(r.name); if (now) await this.save({ ...now, desired: r.status === "running" ? "running" : "stopped" }, "reconcile"); }
    }
    for (const d of domains.values()) {
      const meta = parseThocMetadata(await this.o.hv.xml(d.name).catch(() => ""));
      const spec = meta?.spec as VmSpec | undefined;
      if (!meta || !spec?.name || meta.node !== this.o.node) continue;
      const r: VmRecord = {
        name: spec.name, uuid: d.uuid, domain: d.name, status: stateToStatus(d.state), spec, passwordSet: false, node: meta.node,
        createdAt: meta.createdAt, mac: macFor(d.uuid), tap: tapName(spec.name), imageKind: "disk", gpus: [], detail: "adopted from libvirt",
        desired: stateToStatus(d.state) === "running" ? "running" : "stopped",
      };
      await this.save(r, "reconcile");
      adopted.push(r.name);
    }
    if (adopted.length || missing.length) this.o.log?.info({ adopted, missing }, "reconciled VMs with libvirt");
    return { adopted, missing };
  }

  async gpus(maxAgeMs = 30_000): Promise<HostGpu[]> {
    if (this.gpuCache && Date.now() - this.gpuCache.at < maxAgeMs) return this.gpuCache.gpus;
    const gpus = parseGpus(await this.o.hv.pciDevicesXml());
    this.gpuCache = { at: Date.now(), gpus };
    return gpus;
  }

  async allocations(): Promise<GpuAllocation[]> {
    return (await this.list()).flatMap((r) => r.gpus);
  }

  /** What the VMs hold of this node, as fit() counts it (containers' admission counts them too). */
  async reservations(): Promise<Reservation[]> {
    return (await this.list()).map(reservationOf);
  }

  /**
   * Runs fn in line with VM admissions (nothing else admits meanwhile): the
   * container manager admits in here, so a VM and a container never both take
   * the last GPU or CPUs.
   */
  admission<T>(fn: () => Promise<T>): Promise<T> { return this.serialized(fn); }

  /** Runs fn after every earlier serialized fn has finished. */
  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn, fn);
    this.chain = p.catch(() => {});
    return p;
  }

  private lock(name: string): () => void {
    if (this.busy.has(name)) throw new ThocError("aborted", `VM ${name} is busy with another operation: try again in a moment`, { vm: name });
    this.busy.add(name);
    return () => this.busy.delete(name);
  }

  async create(input: VmSpecInput, opts: { start?: boolean; by?: VmTrigger; group?: string; requestId?: string } = {}): Promise<VmRecord> {
    const by = opts.by ?? "user";
    const spec = validateSpec(input, this.o.host(), { bridge: this.o.defaultBridge });
    if (opts.requestId) {
      // A retry of a create that got through (its answer was lost, or the leader changed): the same VM, not an error.
      const had = await this.o.records.get(spec.name);
      if (had?.requestId === opts.requestId) return had;
    }
    const image = await this.preflight(spec);
    const release = this.lock(spec.name);
    const undo: (() => Promise<unknown>)[] = [];
    try {
      const passwordHash = spec.cloudInit?.password ? await hashPassword(spec.cloudInit.password) : undefined;
      const stored: VmSpec = spec.cloudInit ? { ...spec, cloudInit: { ...spec.cloudInit, password: "" } } : spec;
      const uuid = randomUUID();
      const draft: VmRecord = {
        name: spec.name, uuid, domain: domainName(spec.name), status: "creating", spec: stored, passwordSet: Boolean(passwordHash),
        node: this.o.node, createdAt: Date.now(), mac: macFor(uuid), tap: tapName(spec.name), imageKind: image.kind, gpus: [], detail: "",
        ...(opts.group ? { group: opts.group } : {}), ...(opts.requestId ? { requestId: opts.requestId } : {}),
      };
      const inventory = spec.gpu ? await this.gpus() : [];
      const rec = await this.reserve(draft, spec, inventory, by);
      undo.push(() => this.remove(rec, by));
      await this.defineDomain(rec, spec, image, passwordHash, undo);
      let status: VmStatus = "stopped";
      if (opts.start !== false) {
        await this.o.hv.start(rec.domain);
        undo.push(() => this.o.hv.destroy(rec.domain));
        if (this.realHost) await this.applyNetwork(rec);
        status = "running";
      }
      return await this.save({ ...rec, status, desired: status === "running" ? "running" : "stopped" }, by);
    } catch (err) {
      for (const u of undo.reverse()) await u().catch((e) => this.o.log?.warn({ err: e, vm: spec.name }, "create rollback step failed"));
      throw err;
    } finally {
      release();
    }
  }

  /** The refusals that need no reservation: the name is free here and in libvirt, the image is sound and fits the disk. */
  private async preflight(spec: VmSpec): Promise<ImageRecord> {
    if (this.busy.has(spec.name) || await this.o.records.get(spec.name)) {
      throw new ThocError("already_exists", `a VM named ${spec.name} already exists on this node: pick another name or delete it (thoc-node vm delete ${spec.name})`, { vm: spec.name });
    }
    if (await this.o.hv.lookup(domainName(spec.name))) {
      throw new ThocError("already_exists", `libvirt already has a domain ${domainName(spec.name)} (not managed by thoc-node): pick another name or remove it with virsh undefine`, { vm: spec.name });
    }
    const image = await this.o.images.verify(spec.image);
    if (image.kind === "disk" && spec.diskGB > 0 && spec.diskGB * 2 ** 30 < image.virtualSize) {
      throw new ThocError("invalid_argument", `diskGB: image ${image.name} is ${Math.ceil(image.virtualSize / 2 ** 30)} GiB; give --disk ${Math.ceil(image.virtualSize / 2 ** 30)} or more`, { field: "diskGB" });
    }
    if (image.kind === "disk" && spec.diskGB === 0) throw new ThocError("invalid_argument", "diskGB: a disk image needs a disk: give --disk GB", { field: "diskGB" });
    if (this.busy.has(spec.name)) throw new ThocError("already_exists", `a VM named ${spec.name} is being created right now: pick another name`, { vm: spec.name });
    return image;
  }

  /**
   * Admission and reservation in one serialized step (check-then-record with
   * nothing in between), so concurrent creates never share a device or
   * overcommit: fit() decides against the records as they are, the record
   * holding the VM's share is written before the next create looks.
   */
  private reserve(draft: VmRecord, spec: VmSpec, inventory: HostGpu[], by: VmTrigger): Promise<VmRecord> {
    return this.serialized(async () => {
      const all = await this.list();
      if (all.some((r) => r.name === spec.name)) throw new ThocError("already_exists", `a VM named ${spec.name} already exists on this node: pick another name or delete it (thoc-node vm delete ${spec.name})`, { vm: spec.name });
      const others = (await this.o.foreignReservations?.()) ?? [];
      const verdict = fit(spec, [...all.map(reservationOf), ...others], { ...this.o.host(), gpus: inventory, loadFactor: this.o.loadFactor });
      if (!verdict.fits) throw fitError(verdict);
      // The mediated device of a MIG slice is named here, by the node that creates it.
      const gpus = verdict.gpus.map((a) => (a.mode === "mig" ? { ...a, mdevUuid: randomUUID() } : a));
      return this.save({ ...draft, gpus }, by);
    });
  }

  /** The VM's directory (overlay disk, seed ISO) and its libvirt domain; each step leaves its undo. */
  private async defineDomain(rec: VmRecord, spec: VmSpec, image: ImageRecord, passwordHash: string | undefined, undo: (() => Promise<unknown>)[]): Promise<void> {
    const dir = this.dirOf(spec.name);
    await this.o.hostReady?.();
    await this.access.dir(this.o.vmDir);
    await this.access.dir(dir);
    undo.push(() => rm(dir, { recursive: true, force: true }));
    const disk = spec.diskGB > 0 ? path.join(dir, "disk.qcow2") : undefined;
    if (disk) {
      const base = image.kind === "disk" ? { file: this.o.images.pathOf(image.name, "disk"), format: image.files[0]!.format } : undefined;
      await createOverlay(disk, spec.diskGB, base);
      await this.access.file(disk); // QEMU writes it: its group may (vm/access.ts)
    }
    const nic = spec.network.mode === "bridge-vlan" ? { mac: rec.mac, bridge: bridgeFor(spec.network, this.o.vlanMode, this.o.vlanBridgePattern), tap: rec.tap } : undefined;
    let seedIso: string | undefined;
    if (image.kind === "disk") {
      seedIso = path.join(dir, "seed.iso");
      await buildSeedIso(seedIso, { instanceId: rec.uuid, hostname: spec.cloudInit?.hostname || spec.name, cloudInit: spec.cloudInit, passwordHash, network: spec.network, mac: rec.mac });
      await this.access.file(seedIso);
    }
    const kernel = image.kind === "kernel" ? {
      kernel: this.o.images.pathOf(image.name, "kernel"),
      initrd: image.files.some((f) => f.part === "initrd") ? this.o.images.pathOf(image.name, "initrd") : undefined,
      cmdline: image.cmdline,
    } : undefined;
    const xml = domainXml({
      spec, uuid: rec.uuid, domainType: this.domainType, node: this.o.node, createdAt: rec.createdAt, disk, seedIso, kernel, nic, gpus: rec.gpus,
      serialLog: this.serialLog(spec.name), metadataSpec: rec.spec,
    });
    await this.o.hv.define(xml).catch((err: unknown) => {
      // vm.domainType kvm on a host without KVM (when libvirt could not be asked at start): say which setting to change.
      const m = err instanceof Error ? err.message : String(err);
      if (this.domainType === "kvm" && /virt type 'kvm'|accel 'kvm'/.test(m)) {
        throw new ThocError("failed_precondition", `${m}: this host cannot run KVM guests; set vm.domainType: auto (or qemu) in the agent's config and restart it`, { vm: spec.name });
      }
      throw err;
    });
    undo.push(() => this.o.hv.undefine(rec.domain));
  }

  private async applyNetwork(r: VmRecord): Promise<void> {
    if (r.spec.network.mode === "bridge-vlan") await applyVlan(r.tap, r.spec.network, this.o.vlanMode);
  }

  async startVm(name: string, opts: { by?: VmTrigger } = {}): Promise<VmRecord> {
    const r = await this.get(name);
    const release = this.lock(name);
    try {
      const d = await this.o.hv.lookup(r.domain);
      if (!d) throw new ThocError("failed_precondition", `VM ${name} has no libvirt domain (status ${r.status}): delete it and create it again`, { vm: name });
      if (d.state !== "running") {
        await this.o.hv.start(r.domain);
        if (this.realHost) await this.applyNetwork(r);
      }
      return await this.save({ ...r, status: "running", detail: "", desired: "running", autostartError: undefined }, opts.by);
    } finally { release(); }
  }

  async stopVm(name: string, opts: { force?: boolean; timeoutMs?: number; restarting?: boolean } = {}): Promise<VmRecord> {
    let r = await this.get(name);
    const release = this.lock(name);
    // A restart's stop keeps it meant to run: an agent that dies between the stop and the start starts it again.
    const desired = opts.restarting ? "running" : "stopped";
    try {
      // The user's intent is durable before the guest is asked: an agent that dies mid-stop does not start it again.
      if (r.desired !== desired) r = await this.save({ ...r, desired });
      await this.powerOff(r, opts);
      return await this.save({ ...r, status: "stopped", detail: "", desired, autostartError: undefined });
    } finally { release(); }
  }

  /** ACPI shutdown, wait up to the timeout for the guest to power off, then destroy. */
  private async powerOff(r: VmRecord, opts: { force?: boolean; timeoutMs?: number }): Promise<void> {
    const d = await this.o.hv.lookup(r.domain);
    if (!d) throw new ThocError("failed_precondition", `VM ${r.name} has no libvirt domain: delete it`, { vm: r.name });
    if (d.state === "shutoff") return;
    if (!opts.force) {
      await this.save({ ...r, status: "stopping" });
      await this.o.hv.shutdown(r.domain).catch(() => {});
      const deadline = Date.now() + (opts.timeoutMs || this.o.stopTimeoutMs);
      while (Date.now() < deadline) {
        if ((await this.o.hv.lookup(r.domain))?.state === "shutoff") return;
        await new Promise((res) => setTimeout(res, 100));
      }
      this.o.log?.info({ vm: r.name }, "guest ignored the ACPI shutdown; powering off");
    }
    await this.o.hv.destroy(r.domain).catch((err: ThocError) => {
      if (err.code !== "failed_precondition") throw err;
    });
  }

  /** vm autostart on|off; changes nothing else about the VM. */
  async setAutostart(name: string, on: boolean): Promise<VmRecord> {
    return this.exclusive(name, async (r) => {
      const { autostart: _, ...spec } = r.spec;
      return this.save({ ...r, spec: on ? spec : { ...spec, autostart: false }, ...(on ? {} : { autostartError: undefined }) });
    });
  }

  /** Records why an autostart failed (vm show); the status stays what libvirt says. */
  async noteAutostartError(name: string, error: string): Promise<void> {
    const r = await this.o.records.get(name);
    if (r) await this.save({ ...r, autostartError: error }, "autostart");
  }

  async restartVm(name: string, opts: { force?: boolean; timeoutMs?: number } = {}): Promise<VmRecord> {
    await this.stopVm(name, { ...opts, restarting: true });
    return this.startVm(name);
  }

  async deleteVm(name: string): Promise<void> {
    const r = await this.get(name);
    const release = this.lock(name);
    try {
      const d = await this.o.hv.lookup(r.domain);
      if (d) {
        if (d.state !== "shutoff") await this.o.hv.destroy(r.domain).catch((err: ThocError) => { if (err.code !== "failed_precondition") throw err; });
        await this.o.hv.undefine(r.domain);
      }
      await rm(this.dirOf(name), { recursive: true, force: true });
      await this.remove(r, "user");
    } finally { release(); }
  }

  /** Runs fn while holding the VM's lock (snapshots, restores). */
  async exclusive<T>(name: string, fn: (r: VmRecord) => Promise<T>): Promise<T> {
    const r = await this.get(name);
    const release = this.lock(name);
    try { return await fn(r); } finally { release(); }
  }

  async refreshStatus(name: string): Promise<VmRecord> {
    const r = await this.get(name);
    const d = await this.o.hv.lookup(r.domain);
    return (await this.setStatus(name, d ? stateToStatus(d.state) : "missing", d ? "" : "the libvirt domain is gone")) ?? r;
  }
}
