/**
 * The "vm" subsystem: opens the hypervisor (config.hypervisorUri), reconciles
 * VM records with libvirt, serves VmService and ImageService, and exports
 * per-VM Prometheus metrics.
 */
import type http from "node:http";
import https from "node:https";
import path from "node:path";
import { Counter, Gauge } from "prom-client";
import { agentTlsFiles, followTlsPair, listen, readTlsPair, type AgentContext, type Subsystem, type SubsystemHealth } from "../core/index.js";
import { hostPort } from "../config/index.js";
import { openHypervisor, type Hypervisor } from "../hypervisor/index.js";
import { ImageService, VmService } from "../proto/index.js";
import type { BlobStore } from "../objectstore/index.js";
import { LocalImageStore, type ImageStore } from "./images.js";
import { ObjectImageStore } from "./images-objectstore.js";
import { VmManager, type VmChange, type VmRecord } from "./manager.js";
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
}

/** Images live in the object store's reserved bucket when this agent runs one, else only on this node. */
async function openImages(ctx: AgentContext, deps: VmDeps): Promise<ImageStore> {
  const dir = path.join(ctx.store.dataDir, "images");
  const blobs = deps.objectStore?.blobStore();
  if (!blobs) {
    ctx.log.info({ dir }, "no object store: VM images are kept on this node only");
    return new LocalImageStore(dir);
  }
  const images = new ObjectImageStore(blobs, dir);
  // Not fatal: imports retry it and say what to fix (e.g. an S3 user took the bucket name first).
  await images.ensureBucket().catch((err) => ctx.log.warn({ err, bucket: images.bucket }, "VM image bucket unavailable"));
  return images;
}

export class VmSubsystem implements Subsystem {
  readonly name = "vm";
  hv?: Hypervisor;
  manager?: VmManager;
  private vncServer?: http.Server;
  private certWatch?: { stop(): void };
  private readonly vncSockets = new Set<import("node:net").Socket>();

  constructor(private readonly deps: VmDeps = {}) {}

  async start(ctx: AgentContext): Promise<void> {
    const cfg = ctx.config;
    let manager: VmManager | undefined;
    const hv = openHypervisor(cfg.hypervisorUri, {
      onDisconnect: (why) => ctx.log.warn({ uri: cfg.hypervisorUri, why }, "hypervisor connection lost; reconnecting"),
      onReconnect: () => {
        ctx.log.info({ uri: cfg.hypervisorUri }, "hypervisor reconnected");
        manager?.reconcile().catch((err) => ctx.log.warn({ err }, "reconcile after reconnect failed"));
      },
    });
    this.hv = hv;
    const images = await openImages(ctx, this.deps);
    manager = new VmManager({
      hv, images, records: ctx.store.json<VmRecord>("vm"), vmDir: path.join(ctx.store.dataDir, "vms"),
      node: ctx.config.name, domainType: cfg.vm.domainType,
      host: () => { const c = ctx.capacity(); return { cpus: c.cpus, memoryBytes: c.memoryBytes }; },
      loadFactor: cfg.limits.loadFactor, stopTimeoutMs: cfg.vm.stopTimeout, defaultBridge: cfg.vm.bridge,
      vlanMode: cfg.vm.vlanMode, vlanBridgePattern: cfg.vm.vlanBridgePattern, log: ctx.log,
      onChange: (c: VmChange) => {
        if (ctx.events) { const e = vmEvent(c); if (e) ctx.events.publish(e); }
        this.deps.onVmChange?.(c);
      },
    });
    this.manager = manager;
    try {
      await hv.open();
      ctx.log.info({ uri: hv.uri, version: await hv.version() }, "hypervisor connected");
    } catch (err) {
      // The agent still starts (membership, object store); VM calls answer UNAVAILABLE until libvirt is back.
      ctx.log.error({ err, uri: hv.uri }, "hypervisor unreachable; VMs unavailable until it answers");
    }
    await manager.start();
    const vnc = await this.startVnc(ctx, manager);
    const local = vmService(manager, { statsTimeoutMs: cfg.vm.statsTimeout, vnc });
    ctx.rpc.add(VmService, this.deps.routeVmService ? this.deps.routeVmService(local) : local);
    ctx.rpc.add(ImageService, imageService(images, manager));
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
    const count: Gauge = new Gauge({
      name: "thoc_vms", help: "VMs on this node.", registers: [ctx.metrics],
      collect: async () => { count.set((await m.list().catch(() => [])).length); },
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
    return { status: "up", detail: this.hv.uri };
  }
}
