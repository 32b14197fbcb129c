/**
 * The "vm" subsystem: opens the hypervisor (config.hypervisorUri), reconciles
 * VM records with libvirt, serves VmService and ImageService, and exports
 * per-VM Prometheus metrics.
 */
import type http from "node:http";
import https from "node:https";
import path from "node:path";
import { Counter, Gauge } from "prom-client";
import { agentTlsFiles, followTlsPair, listen, readTlsPair, type AgentContext, type Logger, type Subsystem, type SubsystemHealth } from "../core/index.js";
import { configError, hostPort, type Config } from "../config/index.js";
import { openHypervisor, type HostCapabilities, type Hypervisor } from "../hypervisor/index.js";
import { QemuAccess } from "./access.js";
import { ImageService, VmService } from "../proto/index.js";
import type { BlobStore } from "../objectstore/index.js";
import { LocalImageStore, type ImageStore } from "./images.js";
import { ObjectImageStore } from "./images-objectstore.js";
import { VmManager, type VmChange, type VmRecord, type VmStatus } from "./manager.js";
import { budgetOf, usageOf, type Reservation } from "./fit.js";
import { autostartVms, type AutostartOutcome } from "./autostart.js";
import type { ImplOf } from "../rpc/index.js";
import { vmEvent } from "./events.js";
import { withCpuPercent, type VmMetricsReading } from "./ops.js";
import { imageService, vmService } from "./rpc.js";
import { VncTokens } from "./vnc.js";
import { createVncProxy } from "./vnc-proxy.js";

/** What the VM subsystem needs from the rest of the agent, given by the composition root. */
export interface VmDeps {
  /** The cluster's blob store for base images (started first); without one, images stay on this node. */
  objectStore?: { blobStore(): BlobStore };
  /** Wraps this node's VmService (the scheduler: every agent answers for the whole cluster); absent, it is served as is. */
  routeVmService?: (local: ImplOf<typeof VmService>) => ImplOf<typeof VmService>;
  /** Every change of a VM record on this node (the scheduler's VM table, the event stream). */
  onVmChange?: (c: VmChange) => void;
  /** Why a VM must not be autostarted here (the scheduler: it was deleted with --force while this node was down); undefined: start it. */
  autostartVeto?: (r: VmRecord) => Promise<string | undefined>;
  /** What containers on this node hold (GPUs, CPU, RAM): VMs' admission counts them (the ledger both share). */
  foreignReservations?: () => Promise<Reservation[]>;
}

/** Images live in the object store's reserved bucket when this agent runs one, else only on this node. */
async function openImages(ctx: AgentContext, deps: VmDeps, access: QemuAccess): Promise<ImageStore> {
  const dir = path.join(ctx.store.dataDir, "images");
  const blobs = deps.objectStore?.blobStore();
  if (!blobs) {
    ctx.log.info({ dir }, "no object store: VM images are kept on this node only");
    return new LocalImageStore(dir, access);
  }
  const images = new ObjectImageStore(blobs, dir, { access });
  // Not fatal: imports retry it and say what to fix (e.g. an S3 user took the bucket name first).
  await images.ensureBucket().catch((err) => ctx.log.warn({ err, bucket: images.bucket }, "VM image bucket unavailable"));
  return images;
}

/** How long the agent's start waits for libvirt to answer before it goes on without (VMs degraded until it does). */
const PREFLIGHT_WAIT_MS = 5000;

/** A libvirt URI whose QEMU runs on this host, reading files from our data dir (no host part). */
const localQemu = (uri: string) => /^qemu(\+unix)?:\/\/\//.test(uri);
/** The test driver and the in-memory hypervisor run no guests: there is no KVM question to ask. */
const noGuests = (uri: string) => /^(test|memory):/.test(uri);

export class VmSubsystem implements Subsystem {
  readonly name = "vm";
  hv?: Hypervisor;
  manager?: VmManager;
  private vncServer?: http.Server;
  private certWatch?: { stop(): void };
  private readonly vncSockets = new Set<import("node:net").Socket>();
  /** Who besides the agent may read VM files: QEMU's group once libvirt said who QEMU is. */
  readonly access = new QemuAccess();
  /** The domain type VMs are defined with: vm.domainType, or what auto resolved to. */
  domainType: "kvm" | "qemu" = "kvm";
  /** Why auto chose qemu (shown in status), or why the host could not be read. */
  private hostNote = "";
  private hostRead?: Promise<void>;
  private kvmWarned = false;
  /** open() was called (by preflight or start): the hypervisor keeps reconnecting by itself from then on. */
  private opened = false;
  /** The autostart pass (once per agent process, at the first reconcile with libvirt); its outcomes for status. */
  autostart?: Promise<AutostartOutcome[]>;
  private autostartFailed: AutostartOutcome[] = [];
  private startAutostart?: () => void;

  constructor(private readonly deps: VmDeps = {}) {}

  private openHv(cfg: Config, log: Logger): Hypervisor {
    if (this.hv) return this.hv;
    this.domainType = cfg.vm.domainType === "qemu" ? "qemu" : "kvm";
    this.hv = openHypervisor(cfg.hypervisorUri, {
      onDisconnect: (why) => log.warn({ uri: cfg.hypervisorUri, why }, "hypervisor connection lost; reconnecting"),
      onReconnect: () => {
        log.info({ uri: cfg.hypervisorUri }, "hypervisor reconnected");
        // libvirtd may come back configured otherwise (qemu.conf user, /dev/kvm): read the host again, then reconcile.
        this.hostRead = this.readHost(cfg, log, false);
        void this.hostRead.then(() => this.manager?.reconcile()).then(() => this.startAutostart?.()).catch((err) => log.warn({ err }, "reconcile after reconnect failed"));
      },
    });
    return this.hv;
  }

  /**
   * Before the agent binds anything: connect to libvirt, resolve vm.domainType
   * and make the data dir searchable by QEMU, or refuse (exit 2) what cannot
   * work — vm.domainType kvm on a host without KVM, a data dir under a parent
   * QEMU cannot search. A libvirtd that does not answer is not refused (the
   * agent runs degraded, as at any later outage); the checks then run when it
   * answers, and log instead of exiting.
   */
  async preflight(cfg: Config, log: Logger): Promise<void> {
    const hv = this.openHv(cfg, log);
    this.opened = true;
    const opening = hv.open();
    let timer: NodeJS.Timeout | undefined;
    const answered = await Promise.race([
      opening.then(() => true, () => false),
      new Promise<boolean>((r) => { timer = setTimeout(() => r(false), PREFLIGHT_WAIT_MS); }),
    ]).finally(() => clearTimeout(timer));
    if (!answered) {
      // Down (the watchdog reconnects, onReconnect reads the host) or silent (the first connect may still
      // answer): the agent starts degraded rather than wait on libvirt; the host is read, and anything
      // wrong logged, once it answers.
      this.hostRead = opening.then(() => this.readHost(cfg, log, false), () => {});
      return;
    }
    this.hostRead = this.readHost(cfg, log, true);
    await this.hostRead;
  }

  /** Resolves once the host was read (at start or after a reconnect); a create awaits it. */
  private hostReady(): Promise<void> {
    // Not connected: the create fails at once with libvirt's UNAVAILABLE rather than wait for an answer.
    if (!this.hv?.connected()) return Promise.resolve();
    return (this.hostRead ?? Promise.resolve()).catch(() => {});
  }

  private async readHost(cfg: Config, log: Logger, fatal: boolean): Promise<void> {
    const hv = this.hv!;
    let caps: HostCapabilities;
    try {
      caps = await hv.hostCapabilities();
    } catch (err) {
      // A libvirt too old for domain capabilities, or a failure mid-call: keep the configured type.
      this.hostNote = `could not read the host's capabilities: ${(err as Error).message}`;
      log.warn({ err, uri: hv.uri }, "could not read libvirt's capabilities; vm.domainType auto assumes kvm");
      return;
    }
    if (localQemu(hv.uri)) this.access.setIdentity(caps.qemu);
    if (!noGuests(hv.uri)) this.resolveDomainType(cfg, log, caps, fatal);
    const dataDir = cfg.dataDir;
    try {
      const changed = await this.access.prepareDataDir(dataDir);
      if (changed.length) log.info({ changed, qemu: this.access.identity }, "made the data dir searchable by QEMU's group (and no one else): docs/vms.md");
      await this.access.normalize(path.join(dataDir, "vms"), path.join(dataDir, "images"));
    } catch (err) {
      if (fatal) throw err;
      log.error({ err }, "QEMU cannot reach the VM files; VMs will not start");
      this.hostNote = (err as Error).message;
    }
  }

  private resolveDomainType(cfg: Config, log: Logger, caps: HostCapabilities, fatal: boolean): void {
    const want = cfg.vm.domainType;
    const why = caps.kvm.why ?? "libvirt gave no reason";
    if (want === "kvm" && !caps.kvm.available) {
      const msg = `kvm, but libvirt says this host cannot run KVM guests (${why}): set vm.domainType: auto (or qemu: TCG emulation, much slower), or enable KVM (/dev/kvm, the kvm_intel or kvm_amd module)`;
      if (fatal) throw configError("vm.domainType", msg);
      log.error({ reason: why }, `vm.domainType ${msg}`);
      this.hostNote = `vm.domainType kvm, but KVM is unavailable (${why})`;
      return;
    }
    if (want !== "auto") { this.domainType = want; this.hostNote = ""; return; }
    this.domainType = caps.kvm.available ? "kvm" : "qemu";
    this.hostNote = caps.kvm.available ? "" : `no KVM on this host (${why}): VMs run under TCG emulation, many times slower`;
    if (!caps.kvm.available && !this.kvmWarned) {
      this.kvmWarned = true;
      log.warn({ reason: why }, "vm.domainType auto: KVM is not available on this host, so VMs run as domain type qemu (TCG emulation, many times slower); enable KVM, or set vm.domainType: qemu to make this the plan");
    }
  }

  async start(ctx: AgentContext): Promise<void> {
    const cfg = ctx.config;
    let manager: VmManager | undefined;
    const hv = this.openHv(cfg, ctx.log);
    const images = await openImages(ctx, this.deps, this.access);
    const self = this;
    manager = new VmManager({
      hv, images, records: ctx.store.json<VmRecord>("vm"), vmDir: path.join(ctx.store.dataDir, "vms"),
      node: ctx.config.name, get domainType() { return self.domainType; }, hostReady: () => this.hostReady(), access: this.access,
      host: () => { const c = ctx.capacity(); return { cpus: c.cpus, memoryBytes: c.memoryBytes }; },
      loadFactor: cfg.limits.loadFactor, stopTimeoutMs: cfg.vm.stopTimeout, defaultBridge: cfg.vm.bridge,
      vlanMode: cfg.vm.vlanMode, vlanBridgePattern: cfg.vm.vlanBridgePattern, log: ctx.log,
      ...(this.deps.foreignReservations ? { foreignReservations: this.deps.foreignReservations } : {}),
      onChange: (c: VmChange) => {
        // A start, stop or delete since clears the failure from status, as it does from the record.
        if (!c.now?.autostartError) this.autostartFailed = this.autostartFailed.filter((o) => o.vm !== c.name);
        if (ctx.events) { const e = vmEvent(c); if (e) ctx.events.publish(e); }
        this.deps.onVmChange?.(c);
      },
    });
    this.manager = manager;
    try {
      // Opened by preflight() when the agent ran it; a start without one (tests) connects and reads the host here.
      if (!this.opened) {
        this.opened = true;
        await hv.open();
        this.hostRead = this.readHost(cfg, ctx.log, true);
        await this.hostRead;
      }
      ctx.log.info({ uri: hv.uri, version: await hv.version(), domainType: noGuests(hv.uri) ? "test" : this.domainType, qemu: this.access.identity }, "hypervisor connected");
    } catch (err) {
      if (err instanceof Error && (err as { details?: { key?: string } }).details?.key) throw err; // a configError from readHost: exit 2
      // The agent still starts (membership, object store); VM calls answer UNAVAILABLE until libvirt is back.
      ctx.log.error({ err, uri: hv.uri }, "hypervisor unreachable; VMs unavailable until it answers");
    }
    await manager.start();
    this.startAutostart = () => {
      // Once per process: later reconnects (a libvirtd restart) only reconcile, as before; a guest that died then is shown stopped.
      if (this.autostart || !hv.connected()) return;
      this.autostart = autostartVms(manager, {
        log: ctx.log, veto: this.deps.autostartVeto,
        onOutcome: (o) => {
          if (o.outcome !== "failed") return;
          this.autostartFailed.push(o);
          // A failure changes no status (the domain is still shut off), so it is no record event: say it here.
          ctx.events?.publish({ kind: "vm", vm: o.vm, action: "failed", status: "stopped", previousStatus: "stopped", by: "autostart", detail: `autostart failed: ${o.reason ?? ""}` });
        },
      });
    };
    // In the background: the agent is ready without waiting for guests; a libvirt that is down now starts them when it
    // answers (onReconnect). One that answered preflight's connect only after its wait is not a reconnect: reconcile
    // (which manager.start() skipped) and autostart once the host is read.
    if (hv.connected()) this.startAutostart();
    else void this.hostRead?.then(async () => {
      if (!hv.connected() || this.autostart) return;
      await manager.reconcile();
      this.startAutostart?.();
    }).catch((err) => ctx.log.warn({ err }, "reconcile after a late libvirt answer failed"));
    const vnc = await this.startVnc(ctx, manager);
    const local = vmService(manager, { statsTimeoutMs: cfg.vm.statsTimeout, vnc });
    ctx.rpc.add(VmService, this.deps.routeVmService ? this.deps.routeVmService(local) : local);
    ctx.rpc.add(ImageService, imageService(images, manager));
    this.registerNodeMetrics(ctx, manager);
    if (cfg.metrics.vmStats) this.registerMetrics(ctx, manager);
  }

  private registerMetrics(ctx: AgentContext, m: VmManager): void {
    // One stats collection per scrape, shared by every metric (each one's collect() awaits it), bounded by
    // vm.statsTimeout; NOWAIT skips a VM stuck in a job instead of hanging /metrics.
    let cached: { at: number; p: Promise<{ vm: string; s: VmMetricsReading }[]> } | undefined;
    const reading = () => {
      if (cached && Date.now() - cached.at < 1000) return cached.p;
      const p = (async () => {
        if (!m.o.hv.connected()) return [];
        const byDomain = new Map((await m.list().catch(() => [] as VmRecord[])).map((r) => [r.domain, r.name]));
        const stats = await m.o.hv.stats(ctx.config.vm.statsTimeout).catch(() => []);
        return stats.filter((x) => byDomain.has(x.name)).map((x) => ({ vm: byDomain.get(x.name)!, s: withCpuPercent(x) }));
      })();
      cached = { at: Date.now(), p };
      return p;
    };
    const metric = <T extends "gauge" | "counter">(kind: T, name: string, help: string, value: (s: VmMetricsReading) => number) => {
      const opts = {
        name, help, labelNames: ["vm"] as const, registers: [ctx.metrics],
        async collect(this: Gauge<"vm"> | Counter<"vm">) {
          this.reset();
          for (const { vm, s } of await reading()) {
            if (this instanceof Gauge) this.set({ vm }, value(s)); else this.inc({ vm }, value(s));
          }
        },
      };
      return kind === "gauge" ? new Gauge(opts) : new Counter(opts);
    };
    metric("counter", "thoc_vm_cpu_seconds_total", "Guest CPU time consumed.", (s) => s.cpuTimeNs / 1e9);
    metric("gauge", "thoc_vm_cpu_percent", "Guest CPU utilisation since the previous reading, averaged over vCPUs.", (s) => s.cpuPercent);
    metric("gauge", "thoc_vm_memory_bytes", "Memory given to the guest (balloon size).", (s) => s.memoryKiB * 1024);
    metric("counter", "thoc_vm_network_receive_bytes_total", "Bytes received on the VM's NICs.", (s) => s.netRxBytes);
    metric("counter", "thoc_vm_network_transmit_bytes_total", "Bytes sent on the VM's NICs.", (s) => s.netTxBytes);
    metric("counter", "thoc_vm_disk_read_bytes_total", "Bytes read from the VM's disks.", (s) => s.blockReadBytes);
    metric("counter", "thoc_vm_disk_written_bytes_total", "Bytes written to the VM's disks.", (s) => s.blockWriteBytes);
    metric("gauge", "thoc_vm_running", "1 when the VM is running.", (s) => (s.state === "running" ? 1 : 0));
  }

  /**
   * The node-level VM figures, read from the VM records (no libvirt call) with one listing per scrape shared
   * by all of them. Exported whatever metrics.vmStats says: they are a handful of series, not one per VM, and
   * the shipped alerts and dashboard read them.
   */
  private registerNodeMetrics(ctx: AgentContext, m: VmManager): void {
    let listed: { at: number; p: Promise<VmRecord[]> } | undefined;
    const records = () => {
      if (!listed || Date.now() - listed.at >= 1000) listed = { at: Date.now(), p: m.list().catch(() => [] as VmRecord[]) };
      return listed.p;
    };
    const count: Gauge = new Gauge({
      name: "thoc_vms", help: "VMs on this node.", registers: [ctx.metrics],
      collect: async () => { count.set((await records()).length); },
    });
    // Every status is exported, 0 included, so a dashboard or alert on e.g. status="crashed" has a series to read.
    // A Record (not an array) so that a status added to VmStatus fails to compile until it is listed here.
    const none: Record<VmStatus, number> = { creating: 0, running: 0, stopping: 0, stopped: 0, paused: 0, crashed: 0, missing: 0, error: 0, unknown: 0 };
    const byStatus: Gauge<"status"> = new Gauge({
      name: "thoc_vms_by_status", help: "VMs on this node, by status (as `vm list` shows it).", labelNames: ["status"], registers: [ctx.metrics],
      collect: async () => {
        const c = { ...none };
        for (const r of await records()) c[r.status]++;
        for (const [status, v] of Object.entries(c)) byStatus.set({ status }, v);
      },
    });
    // What the VMs hold of the node as placement counts it (every VM, running or not: fit() reserves for all),
    // beside the budget placement allows (CPUs and memory × limits.loadFactor): how full the node is for new VMs.
    const held = async () => usageOf((await records()).map((r) => ({ name: r.name, vcpus: r.spec.vcpus, ramMB: r.spec.ramMB, gpus: r.gpus })));
    const budget = () => { const c = ctx.capacity(); return budgetOf({ cpus: c.cpus, memoryBytes: c.memoryBytes, gpus: [], loadFactor: ctx.config.limits.loadFactor }); };
    const vcpus: Gauge = new Gauge({
      name: "thoc_vms_allocated_vcpus", help: "vCPUs the VMs on this node hold (every VM, running or not, as placement counts them).", registers: [ctx.metrics],
      collect: async () => { vcpus.set((await held()).vcpus); },
    });
    const memory: Gauge = new Gauge({
      name: "thoc_vms_allocated_memory_bytes", help: "RAM the VMs on this node hold (every VM, running or not, as placement counts them).", registers: [ctx.metrics],
      collect: async () => { memory.set((await held()).ramMB * 1024 * 1024); },
    });
    new Gauge({
      name: "thoc_vms_vcpu_budget", help: "vCPUs placement lets this node's VMs hold together: CPUs x limits.loadFactor.", registers: [ctx.metrics],
      collect() { this.set(budget().vcpus); },
    });
    new Gauge({
      name: "thoc_vms_memory_budget_bytes", help: "RAM placement lets this node's VMs hold together: memory x limits.loadFactor.", registers: [ctx.metrics],
      collect() { this.set(budget().ramMB * 1024 * 1024); },
    });
  }

  /** The noVNC WebSocket; a port in use disables it (with a warning) instead of failing the agent. */
  private async startVnc(ctx: AgentContext, m: VmManager): Promise<VncTokens | undefined> {
    const port = ctx.config.vm.vncPort;
    if (!port) return undefined;
    // The agent's own certificate (tls.* or the cluster PKI): the token in the URL is a credential.
    const files = agentTlsFiles(ctx.config.tls, ctx.store.dataDir);
    const tls = files && readTlsPair(files.certFile, files.keyFile, "tls");
    const tokens = new VncTokens(() => `${tls ? "wss" : "ws"}://${hostPort(ctx.config.advertise, port)}`);
    const server = createVncProxy(m, tokens, tls);
    server.on("connection", (sock) => { this.vncSockets.add(sock); sock.on("close", () => this.vncSockets.delete(sock)); });
    try {
      await listen(server, ctx.config.bind, port, "VNC WebSocket", "vm.vncPort");
    } catch (err) {
      ctx.log.warn({ err, port }, "VNC WebSocket port unavailable; VNC consoles disabled (set vm.vncPort)");
      return undefined;
    }
    this.vncServer = server;
    if (files && server instanceof https.Server) {
      // The node certificate renews itself (cluster PKI); the WebSocket must not go on presenting an expired one.
      this.certWatch = followTlsPair(files, "tls", (p) => server.setSecureContext(p),
        (err) => ctx.log.warn({ err: err.message }, "VNC WebSocket: the changed certificate files do not load; still serving the previous certificate"));
    }
    return tokens;
  }

  quiesce(): void {
    this.certWatch?.stop();
    this.vncServer?.close();
  }

  async stop(): Promise<void> {
    this.certWatch?.stop();
    if (this.vncServer) {
      // Upgraded (WebSocket) sockets are no longer HTTP connections: end them by hand.
      for (const s of this.vncSockets) s.destroy();
      await new Promise((r) => this.vncServer!.close(r));
    }
    this.manager?.stop();
    await this.hv?.close().catch(() => {});
  }

  health(): SubsystemHealth {
    if (!this.hv) return { status: "starting" };
    if (!this.hv.connected()) return { status: "degraded", detail: `hypervisor ${this.hv.uri} unreachable${this.hv.lastError() ? `: ${this.hv.lastError()}` : ""}` };
    // A VM that failed to autostart does not make the node unready: it is said here and in vm show.
    const failed = this.autostartFailed.length ? `; autostart failed for ${this.autostartFailed.map((o) => o.vm).join(", ")} (thoc-node vm show NAME)` : "";
    if (noGuests(this.hv.uri)) return { status: "up", detail: `${this.hv.uri}${failed}` };
    return { status: "up", detail: `${this.hv.uri}, domain type ${this.domainType}${this.hostNote ? `: ${this.hostNote}` : ""}${failed}` };
  }
}
