/**
 * The agent: opens the store (taking the data-dir lock), starts every
 * subsystem, serves gRPC and admin HTTP, and shuts all of it down in reverse
 * order within the configured budget.
 */
import type http from "node:http";
import { create } from "@bufbuild/protobuf";
import path from "node:path";
import type { Config } from "../config/index.js";
import { hostPort } from "../config/index.js";
import { ThocError } from "../errors/index.js";
import { NodeSchema, NodeService, type Node } from "../proto/index.js";
import { RpcServer, groupId, tlsRequestingClientCert } from "../rpc/index.js";
import { LocalStore } from "../store/index.js";
import { closeHttp, createAdminServer } from "./admin.js";
import { checkConfigFiles, listen, VERSION, type AgentContext, type CapacityInfo, type Logger, type Subsystem, type SubsystemHealth } from "../core/index.js";
import { quickCapacity, readCapacity } from "./capacity.js";
import { createMetrics, registerDataDirMetrics, type AgentMetrics } from "./metrics.js";
import { nodeService } from "./node-service.js";
import { openTransport, type NodeTransport } from "./tls.js";
import { authorizer, missingRoles } from "./roles.js";
import { AuditFile, auditor, isAudited } from "./audit.js";
import { ClusterEvents } from "./events.js";

/** Who follows the start from outside (systemd's status line): called after each step. */
export interface AgentHooks {
  progress?(step: string): void;
}

export class Agent {
  private store?: LocalStore;
  private rpc?: RpcServer;
  private admin?: http.Server;
  private metrics?: AgentMetrics;
  private cap?: CapacityInfo;
  private capTimer?: NodeJS.Timeout;
  private started: Subsystem[] = [];
  private readonly preflighted: Subsystem[] = [];
  private transport?: NodeTransport;
  private readonly startedAt = Date.now();
  private stopping?: Promise<void>;
  private audit?: AuditFile;
  /** The event stream (EventService.WatchEvents): audit records and what subsystems publish through ctx.events. */
  readonly events = new ClusterEvents();
  /** Bound ports (differ from config when it asked for port 0). */
  readonly ports = { grpc: 0, http: 0 };

  constructor(
    readonly config: Config,
    readonly log: Logger,
    private readonly subsystems: Subsystem[] = [],
    private readonly hooks: AgentHooks = {},
  ) {}

  get nodeId(): string {
    if (!this.store) throw new ThocError("unavailable", "agent not started");
    return this.store.nodeId;
  }

  get addresses() {
    const a = this.config.advertise;
    return {
      grpc: hostPort(a, this.ports.grpc || this.config.grpcPort),
      http: hostPort(a, this.ports.http || this.config.httpPort),
      s3: hostPort(a, this.config.s3Port),
      gossip: hostPort(a, this.config.gossipPort),
    };
  }

  health(): { ready: boolean; subsystems: Record<string, SubsystemHealth> } {
    const subsystems: Record<string, SubsystemHealth> = {
      store: this.store ? { status: "up" } : { status: "starting" },
      grpc: this.ports.grpc ? { status: "up" } : { status: "starting" },
    };
    for (const s of this.subsystems) {
      subsystems[s.name] = this.started.includes(s) ? safeHealth(s) : { status: "starting" };
    }
    if (this.stopping) for (const k of Object.keys(subsystems)) subsystems[k] = { status: "down", detail: "shutting down" };
    const ready = Object.values(subsystems).every((h) => h.status === "up");
    return { ready, subsystems };
  }

  describe(): Node {
    const c = this.cap;
    const h = this.health();
    return create(NodeSchema, {
      id: this.store?.nodeId ?? "",
      name: this.config.name,
      version: VERSION,
      grpcAddress: this.addresses.grpc,
      httpAddress: this.addresses.http,
      s3Address: this.addresses.s3,
      gossipAddress: this.addresses.gossip,
      capacity: c && {
        cpus: c.cpus, cpuModel: c.cpuModel,
        memoryBytes: BigInt(c.memoryBytes), memoryFreeBytes: BigInt(c.memoryFreeBytes),
        diskBytes: BigInt(c.diskBytes), diskFreeBytes: BigInt(c.diskFreeBytes),
        gpus: c.gpus.map((g) => ({ ...g, memoryBytes: BigInt(g.memoryBytes) })),
      },
      uptimeSeconds: (Date.now() - this.startedAt) / 1000,
      subsystems: Object.entries(h.subsystems).map(([name, s]) => ({ name, status: s.status, detail: s.detail ?? "" })),
      ready: h.ready,
      dataDir: this.config.dataDir,
      dev: this.config.dev,
      hypervisorUri: this.config.hypervisorUri,
      startedAtMs: BigInt(this.startedAt),
    });
  }

  async start(): Promise<void> {
    const cfg = this.config;
    // What the agent writes (LevelDB, keys, blobs) is its own: 0700 directories and 0600 files,
    // whatever umask it was started with (LevelDB creates files as it runs, so only the umask can do it).
    process.umask(0o077);
    // Every file the config names is read (and a key's mode checked) before anything is bound or
    // written, so a bad path is exit 2 with nothing listening and no credentials generated.
    checkConfigFiles(cfg);
    for (const s of this.subsystems) {
      if (!s.preflight) continue;
      this.preflighted.push(s);
      // Named before it runs: a preflight waits on the outside world (libvirtd), the status line says which.
      this.hooks.progress?.(`${s.name}: checking the host`);
      await s.preflight(cfg, this.log);
    }
    this.store = await LocalStore.open(cfg.dataDir);
    this.log.info({ nodeId: this.store.nodeId, dataDir: this.store.dataDir, generation: this.store.generation }, "store opened");
    this.hooks.progress?.(`store opened (node ${this.store.nodeId})`);
    this.metrics = createMetrics({ version: VERSION, node: cfg.name });
    registerDataDirMetrics(this.metrics.registry, this.store.dataDir);
    // The first full read probes CPUs and GPUs (~0.4 s, up to 3 s): it goes on while the first subsystem
    // (membership) starts with what Node knows at once, so the gossip start never waits on it.
    this.cap = await quickCapacity(this.store.dataDir);
    const probed = readCapacity(this.store.dataDir).then((c) => { this.cap = c; });
    this.capTimer = setInterval(() => {
      readCapacity(this.store!.dataDir).then((c) => { this.cap = c; }, () => {});
    }, cfg.metrics.collectInterval).unref();

    this.audit = new AuditFile(path.join(this.store.dataDir, "audit.log"), cfg.audit);
    const adminGid = groupId(cfg.localSocketGroup);
    this.rpc = new RpcServer({
      observe: this.metrics.observeGrpc,
      onInternalError: (e) => this.log.error({ err: e.cause ?? e }, "internal error in gRPC handler"),
      authorize: authorizer({ dev: cfg.dev, adminGid, isRevoked: (serial) => this.transport?.isRevoked(serial) ?? false }),
      wantsRequest: isAudited,
      finished: auditor({ node: cfg.name, file: this.audit, bus: this.events, onError: (err) => this.log.error({ err }, "audit log write failed") }),
    });
    this.rpc.add(NodeService, nodeService(() => this.describe()));
    this.transport = await openTransport({ config: cfg, store: this.store, log: this.log, metrics: this.metrics.registry, rpc: this.rpc, advertise: cfg.advertise });
    this.events.start({
      config: cfg, log: this.log, rpc: this.rpc, nodeId: this.store.nodeId, epoch: this.store.generation,
      grpcAddress: () => this.addresses.grpc, transport: this.transport,
    });

    this.admin = createAdminServer({ registry: this.metrics.registry, health: () => this.health() });
    this.ports.http = await listen(this.admin, cfg.bind, cfg.httpPort, "admin HTTP", "--http-port");

    const ctx = this.context();
    for (const s of this.subsystems) {
      // Every subsystem after the first sees the probed capacity (membership re-gossips it on its next reading).
      if (s !== this.subsystems[0]) await probed;
      await s.start(ctx);
      this.started.push(s);
      this.log.debug({ subsystem: s.name }, "subsystem started");
      const h = safeHealth(s);
      this.hooks.progress?.(`${s.name} ${h.status}${h.detail ? ` (${h.detail})` : ""}`);
    }

    // A method with no role would be refused on every call: better to never start with one.
    const unroled = missingRoles(this.rpc.methodPaths);
    if (unroled.length) throw new ThocError("internal", `methods with no role in agent/roles.ts: ${unroled.join(", ")}`);
    this.ports.grpc = await this.rpc.listen(cfg.bind, cfg.grpcPort, this.transport.serverCredentials());
    if (cfg.localSocket) {
      if (adminGid === undefined) this.log.warn({ socket: cfg.localSocket, group: cfg.localSocketGroup }, `group ${cfg.localSocketGroup} does not exist: the local socket is 0600, for root only (groupadd --system ${cfg.localSocketGroup} to let its members in)`);
      await this.rpc.listenLocal(cfg.localSocket, adminGid);
    }
    this.rpc.setAllServing("SERVING");
    this.hooks.progress?.(`gRPC serving on ${this.addresses.grpc}`);
    this.transport.startRenewal();
  }

  private context(): AgentContext {
    const self = this;
    return {
      config: this.config,
      log: this.log,
      store: this.store!,
      metrics: this.metrics!.registry,
      rpc: this.rpc!,
      nodeId: this.store!.nodeId,
      version: VERSION,
      get addresses() { return self.addresses; },
      capacity: () => this.cap!,
      peerTransport: this.transport,
      events: this.events,
    };
  }

  /** Idempotent: closes listeners, lets in-flight calls finish, stops subsystems, closes the store. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const budget = this.config.shutdownTimeout;
    const deadline = Date.now() + budget;
    const left = () => Math.max(100, deadline - Date.now());
    clearInterval(this.capTimer);
    // The cluster hears first that this node is going (membership's `left`, ~2 gossip rounds), so peers
    // stop routing work here before the drain below, which can take up to half the budget.
    await Promise.all(this.started.map((s) => s.leave?.().catch((err: unknown) => this.log.warn({ err, subsystem: s.name }, "subsystem leave failed"))));
    this.transport?.stop();
    // Every listener stops accepting now; then each drains within its share of the budget.
    for (const s of this.started) {
      try { s.quiesce?.(); } catch (err) { this.log.warn({ err, subsystem: s.name }, "subsystem quiesce failed"); }
    }
    this.events.close();
    await Promise.all([
      this.rpc?.shutdown(Math.floor(budget / 2)),
      this.admin && closeHttp(this.admin, Math.floor(budget / 2)),
    ]);
    // A subsystem that ran its preflight but never started may hold a connection (libvirt's, whose
    // event loop thread would hold the exit up): it is stopped too, after the started ones.
    const unstarted = this.preflighted.filter((s) => !this.started.includes(s));
    for (const s of [...this.started].reverse().concat(unstarted)) {
      try {
        await Promise.race([s.stop(), new Promise((r) => setTimeout(r, left()).unref())]);
      } catch (err) {
        this.log.warn({ err, subsystem: s.name }, "subsystem stop failed");
      }
    }
    this.audit?.close();
    await this.store?.close().catch((err) => this.log.warn({ err }, "store close failed"));
  }
}

function safeHealth(s: Subsystem): SubsystemHealth {
  try {
    return s.health();
  } catch (err) {
    return { status: "down", detail: (err as Error).message };
  }
}
