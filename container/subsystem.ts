/**
 * The "container" subsystem: opens the engine at container.runtimeUri,
 * follows it (ContainerManager: events, reconcile, restart policy, health),
 * serves ContainerService and exports container metrics. An engine that does
 * not answer is not fatal: calls answer unavailable, saying where the agent
 * looked, and the agent reconnects by itself. Health: with container.enabled
 * auto, a host that never had an engine (and no containers) stays ready;
 * with on, or once containers exist or an engine answered, no engine is
 * degraded.
 */
import path from "node:path";
import type { AgentContext, Subsystem, SubsystemHealth } from "../core/index.js";
import { openEngine, type ContainerEngine } from "../engine/index.js";
import type { BlobStore } from "../objectstore/index.js";
import { ContainerService } from "../proto/index.js";
import type { ImplOf } from "../rpc/index.js";
import type { Reservation } from "../vm/index.js";
import { containerEvent } from "./events.js";
import { ContainerManager, type VmLedger } from "./manager.js";
import { registerContainerMetrics } from "./metrics.js";
import { ContainerImageStore } from "./images.js";
import { containerImageHandlers } from "./images-rpc.js";
import type { ContainerRecord } from "./types.js";
import { containerService, disabledContainerService } from "./rpc.js";
import type { ContainerChange } from "./types.js";

/** What the container subsystem needs from the rest of the agent, given by the composition root. */
export interface ContainerDeps {
  /** Wraps this node's ContainerService (the scheduler: placement and routing for the whole cluster); absent, it is served as is. */
  routeContainerService?: (local: ImplOf<typeof ContainerService>) => ImplOf<typeof ContainerService>;
  /** Every change of a container record on this node (the scheduler's table, the event stream). */
  onContainerChange?: (c: ContainerChange) => void;
  /** The cluster's blob store, for imported images (container/images.ts). */
  objectStore?: { blobStore(): BlobStore };
  /** The VM manager once the VM subsystem started: the GPU inventory and VMs' reservations (the ledger both share). */
  vm?: () => VmLedger | undefined;
  /** The engine for a URI (tests); default engine/'s openEngine. */
  openEngine?: (uri: string) => ContainerEngine;
}

export class ContainerSubsystem implements Subsystem {
  readonly name = "container";
  engine?: ContainerEngine;
  private m?: ContainerManager;
  private off = false;
  private mode: "auto" | "on" | "off" = "auto";
  private hasRecords = false;

  constructor(private readonly deps: ContainerDeps = {}) {}

  /** The node's container manager (undefined before start, or when containers are off). */
  manager(): ContainerManager | undefined { return this.m; }

  /** What containers hold of this node, for VMs' admission (the shared ledger); none before start. */
  async reservations(): Promise<Reservation[]> { return this.m ? this.m.reservations() : []; }

  async start(ctx: AgentContext): Promise<void> {
    const cfg = ctx.config.container;
    this.mode = cfg.enabled;
    const route = (local: ImplOf<typeof ContainerService>) => (this.deps.routeContainerService ? this.deps.routeContainerService(local) : local);
    if (cfg.enabled === "off") {
      this.off = true;
      ctx.rpc.add(ContainerService, route(disabledContainerService(`containers are off on node ${ctx.config.name} (container.enabled: off)`)));
      return;
    }
    const engine = (this.deps.openEngine ?? openEngine)(cfg.runtimeUri);
    this.engine = engine;
    const vm = this.deps.vm;
    const blobs = this.deps.objectStore?.blobStore();
    const images = blobs ? new ContainerImageStore(blobs) : undefined;
    const m = new ContainerManager({
      engine, engineUri: cfg.runtimeUri, records: ctx.store.json<ContainerRecord>("container"), volumesDir: path.join(ctx.store.dataDir, "volumes"),
      node: ctx.config.name, nodeId: ctx.nodeId,
      host: () => { const c = ctx.capacity(); return { cpus: c.cpus, memoryBytes: c.memoryBytes }; },
      loadFactor: ctx.config.limits.loadFactor, stopTimeoutMs: cfg.stopTimeout, portAddress: cfg.portAddress === "bind" ? ctx.config.bind : cfg.portAddress,
      healthDefaults: { intervalS: cfg.healthInterval, retries: cfg.healthRetries },
      ...(vm ? {
        vm: {
          gpus: async () => (await vm()?.gpus()) ?? [], reservations: async () => (await vm()?.reservations()) ?? [],
          admission: <T>(fn: () => Promise<T>) => { const l = vm(); return l?.admission ? l.admission(fn) : fn(); },
        },
      } : {}),
      // An imported archive of that name is loaded from the cluster's object store (once per node); else the ref is looked up, then pulled.
      ...(images ? { ensureImage: async (ref: string) => (await images.ensure(engine, ref))?.imageId } : {}),
      log: ctx.log,
      onChange: (c) => {
        if (c.now) this.hasRecords = true; else void m.list().then((l) => { this.hasRecords = l.length > 0; }, () => {});
        if (ctx.events) { const e = containerEvent(c); if (e) ctx.events.publish(e); }
        this.deps.onContainerChange?.(c);
      },
    });
    this.m = m;
    this.hasRecords = (await m.list()).length > 0;
    await m.open();
    const s = m.engineState();
    if (!s.asked) ctx.log.info({ uri: cfg.runtimeUri }, "the container engine has not answered yet; going on without waiting");
    else if (!s.up) ctx.log.info({ uri: cfg.runtimeUri, detail: s.detail, enabled: cfg.enabled }, "no container engine: container calls answer unavailable until one answers");
    ctx.rpc.add(ContainerService, route(containerService(m, { nodeId: ctx.nodeId, uri: cfg.runtimeUri, ...(images ? { images: containerImageHandlers(images, engine) } : {}) })));
    registerContainerMetrics(ctx.metrics, m, { stats: ctx.config.metrics.vmStats, timeoutMs: cfg.statsTimeout });
  }

  async stop(): Promise<void> {
    this.m?.close();
    await this.engine?.close().catch(() => {});
  }

  health(): SubsystemHealth {
    if (this.off) return { status: "up", detail: "off (container.enabled: off)" };
    if (!this.m) return { status: "starting" };
    const s = this.m.engineState();
    if (s.up) return { status: "up", detail: s.detail };
    // The first answer is still coming (a slow engine must not hold the agent's readiness).
    if (!s.asked) return { status: "up", detail: s.detail };
    // An engine that never answered on a host with no containers is not a fault under auto: VMs and storage serve on.
    const degraded = this.mode === "on" || this.hasRecords || s.info !== undefined;
    return degraded ? { status: "degraded", detail: s.detail } : { status: "up", detail: `${s.detail} (container.enabled auto: containers unavailable until an engine answers)` };
  }
}
