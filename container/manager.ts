/**
 * ContainerManager: the containers of this node. Records live in the local
 * store (sublevel "container"); the engine holds the containers, labelled
 * thoc.managed=1 with their name, uuid and node. Create validates and admits
 * (CPU, memory and GPUs against VMs' and containers' reservations, GPUs from
 * the ledger VMs share, host ports free here) before it touches anything, and
 * undoes every step it took when a later one fails: a refused or failed
 * create leaves no record, engine container, volume or GPU allocation.
 * Status follows the engine's events (supervise.ts: restart policy, health,
 * reconciliation when the engine comes back).
 */
import { randomUUID } from "node:crypto";
import { realClock, type Clock } from "../core/index.js";
import type { ContainerEngine, EngineContainer, EngineCreate, EngineIdentity, EngineInfo, EngineStats, ExecOptions, ExecSession, LogOptions } from "../engine/index.js";
import { ThocError } from "../errors/index.js";
import { fit, fitError, type GpuAllocation, type HostGpu, type Reservation } from "../vm/index.js";
import { gpuDevices } from "./gpus.js";
import { HealthPoller, type HealthProbe } from "./health.js";
import { envOf, HEALTH_DEFAULTS, validateContainerSpec, volumesOf, type ContainerSpecInput, type HealthDefaults } from "./spec.js";
import { ENGINE_PREFIX, LABEL, MIN_CPUS, MIN_MEMORY_MB, reservationOf, withEngine, type ContainerRecordStore } from "./record.js";
import { Supervisor } from "./supervise.js";
import type { ContainerChange, ContainerRecord, ContainerSpec, ContainerTrigger, CreateOptions } from "./types.js";
import { BACKOFF, type BackoffOptions } from "./restart.js";
import { Volumes } from "./volumes.js";

/** What the manager needs of VMs (agent/root.ts wires the VM manager in): the GPU inventory and VMs' reservations. */
export interface VmLedger {
  gpus(): Promise<HostGpu[]>;
  reservations(): Promise<Reservation[]>;
  /** Runs fn in line with VM admissions, so a VM and a container are never admitted against the same free share. */
  admission?<T>(fn: () => Promise<T>): Promise<T>;
}

/**
 * Makes an image present in the engine when it can (the container image
 * store: an imported archive of that name is loaded once); whatever it
 * resolves with is ignored. An image still missing afterwards is pulled.
 */
/** Makes the engine hold an image; returns the engine's image id to create from, or nothing (then the manager looks the ref up, else pulls it). */
export type EnsureImage = (ref: string, auth?: { username: string; password: string }) => Promise<string | undefined | void>;

export interface ContainerManagerOptions {
  engine: ContainerEngine;
  /** Where the engine is (container.runtimeUri), for messages while it has not answered. */
  engineUri?: string;
  records: ContainerRecordStore;
  /** <dataDir>/volumes. */
  volumesDir: string;
  /** This node's name (records, labels) and id (engine containers of this agent, when several share an engine). */
  node: string;
  nodeId?: string;
  host: () => { cpus: number; memoryBytes: number };
  /** Fraction of host CPUs and memory workloads may reserve (limits.loadFactor). */
  loadFactor: number;
  stopTimeoutMs: number;
  /** Host address for ports that name none (container.portAddress resolved); empty: every address. */
  portAddress?: string;
  healthDefaults?: HealthDefaults;
  vm?: VmLedger;
  /** Runs first (imported archives); then the engine's image if present, else a pull. */
  ensureImage?: EnsureImage;
  clock?: Clock;
  probe?: HealthProbe;
  backoff?: BackoffOptions;
  log?: { info(o: object, m: string): void; warn(o: object, m: string): void };
  /** Called after a record changed on disk; must not throw. */
  onChange?: (c: ContainerChange) => void;
}

export class ContainerManager {
  readonly clock: Clock;
  readonly volumes: Volumes;
  readonly health: HealthPoller;
  readonly supervisor: Supervisor;
  private readonly busy = new Set<string>();
  private chain: Promise<unknown> = Promise.resolve();
  private readonly lastStats = new Map<string, EngineStats>();

  constructor(readonly o: ContainerManagerOptions) {
    this.clock = o.clock ?? realClock;
    this.volumes = new Volumes(o.volumesDir);
    this.health = new HealthPoller(this.clock, o.probe);
    this.supervisor = new Supervisor(this, o.backoff ?? BACKOFF);
  }

  get engine(): ContainerEngine { return this.o.engine; }
  get nodeId(): string { return this.o.nodeId ?? this.o.node; }

  /** Starts following the engine (events, reconcile when it answers); never waits for an engine that is down. */
  async open(): Promise<void> { await this.supervisor.open(); }
  close(): void { this.supervisor.close(); this.health.stop(); }

  /** Whether the engine answered last time it was asked, and why not. */
  engineState(): { up: boolean; asked: boolean; detail: string; info?: EngineIdentity } { return this.supervisor.engineState(); }
  runtime(): Promise<EngineInfo> { return this.o.engine.info(); }

  async list(): Promise<ContainerRecord[]> {
    const out: ContainerRecord[] = [];
    for await (const r of this.o.records.values()) out.push(r);
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  async get(name: string): Promise<ContainerRecord> {
    const r = await this.o.records.get(name);
    if (!r) throw new ThocError("not_found", `no container named ${name} on this node (thoc-node ct list)`, { container: name });
    return r;
  }

  /** What containers hold of this node (VMs' fit counts them: the shared ledger). */
  async reservations(): Promise<Reservation[]> { return (await this.list()).map(reservationOf); }

  async gpuAllocations(): Promise<GpuAllocation[]> { return (await this.list()).flatMap((r) => r.gpus); }

  /** Writes a record and reports the change. */
  async save(r: ContainerRecord, by: ContainerTrigger): Promise<ContainerRecord> {
    const previous = await this.o.records.get(r.name);
    await this.o.records.put(r.name, r);
    this.changed({ name: r.name, now: r, previous, by });
    return r;
  }

  private async remove(r: ContainerRecord, by: ContainerTrigger): Promise<void> {
    await this.o.records.del(r.name);
    this.changed({ name: r.name, previous: r, by });
  }

  private changed(c: ContainerChange): void {
    try { this.o.onChange?.(c); } catch (err) { this.o.log?.warn({ err, container: c.name }, "container change listener failed"); }
  }

  isBusy(name: string): boolean { return this.busy.has(name); }

  private lock(name: string): () => void {
    if (this.busy.has(name)) throw new ThocError("aborted", `container ${name} is busy with another operation: try again in a moment`, { container: name });
    this.busy.add(name);
    return () => { this.busy.delete(name); this.supervisor.released(name); };
  }

  /** Runs fn holding name's lock (refused with aborted while another operation has it). */
  async exclusive<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const release = this.lock(name);
    try { return await fn(); } finally { release(); }
  }

  /** Runs fn after every earlier serialized fn (admission: check-then-record with nothing in between). */
  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn, fn);
    this.chain = p.catch(() => {});
    return p;
  }

  /** A request's spec, validated with this node's health-check defaults. */
  validate(input: ContainerSpecInput): ContainerSpec { return validateContainerSpec(input, this.o.healthDefaults ?? HEALTH_DEFAULTS); }

  async create(input: ContainerSpec, opts: CreateOptions = {}): Promise<ContainerRecord> {
    const by = opts.by ?? "user";
    const spec = this.validate(input);
    const had = await this.o.records.get(spec.name);
    // A retried create whose answer was lost (or went through another leader): the same container, not an error.
    if (had && opts.requestId && had.requestId === opts.requestId) return had;
    if (had) throw exists(spec.name);
    const release = this.lock(spec.name);
    const undo: (() => Promise<unknown>)[] = [];
    try {
      const auth = spec.registryUser && opts.registryPassword ? { username: spec.registryUser, password: opts.registryPassword } : undefined;
      const imageId = await this.ensureImage(spec.image, auth);
      const inventory = spec.gpuDeviceIds.length ? await this.gpuInventory() : [];
      const rec = await this.reserve(spec, inventory, imageId, opts, by);
      undo.push(() => this.remove(rec, by));
      const devices = gpuDevices(rec.gpus, inventory);
      if (devices.length && !(await this.o.engine.info()).gpus) {
        throw new ThocError("failed_precondition", `the container engine on ${this.o.node} offers no GPUs: generate the CDI spec (nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml) and restart the engine`, { container: spec.name });
      }
      const made = await this.volumes.ensure(volumesOf(spec).map((v) => v.name));
      undo.push(() => this.volumes.remove(made));
      const engineId = await this.o.engine.create(this.engineCreate(rec, devices));
      undo.push(() => this.o.engine.remove(engineId, { force: true }));
      let r: ContainerRecord = { ...rec, engineId };
      if (!opts.noStart) await this.o.engine.start(engineId);
      const c = await this.o.engine.inspect(engineId);
      r = withEngine(r, c);
      r = await this.save({ ...r, detail: "" }, by);
      this.supervisor.running(r, c);
      return r;
    } catch (err) {
      for (const u of undo.reverse()) await u().catch((e) => this.o.log?.warn({ err: e, container: spec.name }, "create rollback step failed"));
      throw err;
    } finally {
      release();
    }
  }

  private async ensureImage(ref: string, auth?: { username: string; password: string }): Promise<string> {
    // An imported image: the engine knows it by the archive's own tags, so the container is created from the id.
    const got = await this.o.ensureImage?.(ref, auth);
    if (typeof got === "string" && got) return got;
    const have = await this.o.engine.imageId(ref);
    if (have) return have;
    try {
      await this.o.engine.pullImage(ref, auth);
    } catch (err) {
      const e = ThocError.from(err);
      // The engine itself away (its errors name its URI) or the call cancelled: that, not a bad image. Anything the
      // registry said (no such image, unreachable, denied) means this image cannot be had here.
      if ((e.code === "unavailable" && e.details.uri) || e.code === "cancelled" || e.code === "deadline_exceeded") throw e;
      throw new ThocError("not_found", `image ${ref}: not on this node and the pull failed (${e.message}); import it (thoc-node ct image import NAME FILE) or check the reference and registry credentials`, { image: ref }, { cause: err });
    }
    const id = await this.o.engine.imageId(ref);
    if (!id) throw new ThocError("not_found", `image ${ref}: pulled, but the engine does not list it`, { image: ref });
    return id;
  }

  private async gpuInventory(): Promise<HostGpu[]> {
    const gpus = this.o.vm ? await this.o.vm.gpus() : [];
    if (!gpus.length) throw new ThocError("failed_precondition", `node ${this.o.node} has no GPUs (thoc-node vm gpus): run the container without --gpu or on a node with GPUs`, { field: "gpuDeviceIds" });
    return gpus;
  }

  /** Admission and the record in one serialized step, so concurrent creates never share a GPU, a host port or the last CPUs. */
  private reserve(spec: ContainerSpec, inventory: HostGpu[], imageId: string, opts: CreateOptions, by: ContainerTrigger): Promise<ContainerRecord> {
    const inLine = <T>(fn: () => Promise<T>) => (this.o.vm?.admission ? this.o.vm.admission(fn) : fn());
    return this.serialized(() => inLine(async () => {
      const mine = await this.list();
      if (mine.some((r) => r.name === spec.name)) throw exists(spec.name);
      for (const p of spec.ports.filter((x) => x.hostPort)) {
        const holder = mine.find((r) => [...r.ports, ...r.spec.ports].some((q) => q.hostPort === p.hostPort && q.protocol === p.protocol));
        if (holder) throw new ThocError("resource_exhausted", `host port ${p.hostPort}/${p.protocol} is already used by container ${holder.name} on node ${this.o.node}: pick another --port or node`, { port: p.hostPort, holder: holder.name });
      }
      const vms = this.o.vm ? await this.o.vm.reservations() : [];
      const request = { name: spec.name, vcpus: spec.cpus || MIN_CPUS, ramMB: spec.memoryMB || MIN_MEMORY_MB, gpu: spec.gpuDeviceIds.length ? { enabled: true, mode: "passthrough" as const, deviceIds: spec.gpuDeviceIds, migProfile: "" } : undefined };
      const verdict = fit(request, [...vms, ...mine.map(reservationOf)], { ...this.o.host(), gpus: inventory, loadFactor: this.o.loadFactor });
      if (!verdict.fits) throw fitError(verdict);
      const rec: ContainerRecord = {
        name: spec.name, uuid: randomUUID(), engineId: "", spec, status: "creating", health: "", detail: "", desiredState: opts.noStart ? "stopped" : "running",
        node: this.o.node, createdAt: this.clock.now(), startedAt: 0, exitCode: 0, restartCount: 0, ports: [], gpus: verdict.gpus, imageId,
        ...(opts.group ? { group: opts.group } : {}), ...(opts.requestId ? { requestId: opts.requestId } : {}),
      };
      return this.save(rec, by);
    }));
  }

  private engineCreate(r: ContainerRecord, devices: string[]): EngineCreate {
    const s = r.spec;
    return {
      name: ENGINE_PREFIX + s.name, image: r.imageId || s.image, ...(s.command.length ? { command: s.command } : {}), env: envOf(s),
      labels: { ...s.labels, [LABEL.managed]: "1", [LABEL.name]: s.name, [LABEL.uuid]: r.uuid, [LABEL.node]: this.o.node, [LABEL.nodeId]: this.nodeId, [LABEL.spec]: JSON.stringify(s) },
      ports: s.ports.map((p) => ({ ...p, hostIp: p.hostIp || this.o.portAddress || "" })),
      mounts: volumesOf(s).map((v) => ({ source: this.volumes.pathOf(v.name), target: v.containerPath, readOnly: v.readOnly })),
      cpus: s.cpus, memoryBytes: s.memoryMB * 1048576, devices,
    };
  }

  private async engineOf(name: string): Promise<ContainerRecord> {
    const r = await this.get(name);
    if (!r.engineId) throw new ThocError("failed_precondition", `container ${name} has no engine container (${r.status}${r.detail ? `: ${r.detail}` : ""}): delete it and create it again`, { container: name });
    return r;
  }

  start(name: string, opts: { by?: ContainerTrigger } = {}): Promise<ContainerRecord> { return this.drive(name, "start", opts); }
  stop(name: string, opts: { timeoutMs?: number; by?: ContainerTrigger } = {}): Promise<ContainerRecord> { return this.drive(name, "stop", opts); }
  restart(name: string, opts: { timeoutMs?: number; by?: ContainerTrigger } = {}): Promise<ContainerRecord> { return this.drive(name, "restart", opts); }

  /** start, stop and restart: the wanted state saved first, the engine driven, the record read back from it. */
  private async drive(name: string, op: "start" | "stop" | "restart", opts: { timeoutMs?: number; by?: ContainerTrigger }): Promise<ContainerRecord> {
    const by = opts.by ?? "user";
    const r0 = await this.engineOf(name);
    const release = this.lock(name);
    try {
      this.supervisor.cancelRestart(name);
      // A start keeps its health watch: supervisor.running() below sets it as the container now is.
      if (op !== "start") this.health.unwatch(name);
      const up = op !== "stop";
      // The intent is durable first: the exit a stop causes is no failure, and an agent dying mid-stop does not start it again.
      const r = await this.save({ ...r0, desiredState: up ? "running" : "stopped" }, by);
      const timeoutMs = opts.timeoutMs || this.o.stopTimeoutMs;
      if (op === "start") await this.o.engine.start(r.engineId);
      else if (op === "stop") await this.o.engine.stop(r.engineId, timeoutMs);
      else await this.o.engine.restart(r.engineId, timeoutMs);
      const c = await this.o.engine.inspect(r.engineId);
      if (!up) return await this.save({ ...withEngine(r, c), detail: "" }, by);
      const now = await this.save({ ...withEngine({ ...r, health: "" }, c), detail: "" }, by);
      this.supervisor.running(now, c);
      return now;
    } finally { release(); }
  }

  /**
   * Removes the engine container, the record (and so its GPUs) and, unless
   * keepVolumes, its volumes no other container mounts; returns the volumes
   * removed.
   */
  async delete(name: string, opts: { keepVolumes?: boolean; by?: ContainerTrigger } = {}): Promise<string[]> {
    const r = await this.get(name);
    const release = this.lock(name);
    try {
      this.supervisor.cancelRestart(name);
      this.health.unwatch(name);
      if (r.engineId) {
        await this.o.engine.remove(r.engineId, { force: true }).catch((err) => { if (ThocError.from(err).code !== "not_found") throw err; });
      }
      let removed: string[] = [];
      if (!opts.keepVolumes) {
        const others = new Set((await this.list()).filter((x) => x.name !== name).flatMap((x) => volumesOf(x.spec).map((v) => v.name)));
        removed = await this.volumes.remove(volumesOf(r.spec).map((v) => v.name).filter((v) => !others.has(v)));
      }
      this.lastStats.delete(name);
      await this.remove(r, opts.by ?? "user");
      return removed;
    } finally { release(); }
  }

  logs(name: string, opts: LogOptions): AsyncIterable<{ stream: "stdout" | "stderr"; data: Buffer }> {
    const self = this;
    return (async function* () {
      const r = await self.engineOf(name);
      yield* self.o.engine.logs(r.engineId, opts);
    })();
  }

  async exec(name: string, opts: ExecOptions): Promise<ExecSession> {
    const r = await this.engineOf(name);
    if (r.status !== "running" && r.status !== "unhealthy") {
      throw new ThocError("failed_precondition", `container ${name} is ${r.status}: start it first (thoc-node ct start ${name})`, { container: name });
    }
    return this.o.engine.exec(r.engineId, opts);
  }

  /** The engine's counters, with CPU % over the time since the previous reading (or since the start). */
  async stats(name: string): Promise<EngineStats & { cpuPercent: number }> {
    const r = await this.engineOf(name);
    const s = await this.o.engine.stats(r.engineId);
    const prev = this.lastStats.get(name);
    this.lastStats.set(name, s);
    const [cpu0, t0] = prev && prev.timestampMs < s.timestampMs ? [prev.cpuSeconds, prev.timestampMs] : [0, r.startedAt];
    const dt = (s.timestampMs - t0) / 1000;
    return { ...s, cpuPercent: dt > 0 && s.pids > 0 ? Math.max(0, ((s.cpuSeconds - cpu0) / dt) * 100) : 0 };
  }

  reconcile(): Promise<{ adopted: string[]; missing: string[] }> { return this.supervisor.reconcile(); }
}

const exists = (name: string) =>
  new ThocError("already_exists", `a container named ${name} already exists on this node: pick another name or delete it (thoc-node ct delete ${name})`, { container: name });
