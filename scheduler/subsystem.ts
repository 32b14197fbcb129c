/**
 * The "scheduler" subsystem: the elected leader (election.ts) over a fixed,
 * versioned voter set, the fence every node keeps (fence.ts), placement on
 * the leader (placer.ts), the cluster's VM table (vm-table.ts, kept by this
 * node's publisher.ts), and VmService as any agent serves it (routing.ts).
 * It starts after the VM subsystem, whose local VmService it wraps (the
 * composition root hands routeVmService and onVmChange to the VM subsystem).
 * Containers share the table and the placement: the container subsystem's
 * ContainerService is wrapped by routeContainerService, its changes come in
 * through onContainerChange, and `containers` gives the node's own.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { PeerAuth, PeerPool, authenticated, clusterView, peerCredentials, type ClusterTable, type ClusterView } from "../cluster/index.js";
import type { AgentContext, Membership, Subsystem, SubsystemHealth } from "../core/index.js";
import { ThocError } from "../errors/index.js";
import { ContainerService, SchedulerService, VmService, type CreateContainerRequest, type CreateVmRequest, type LeaderInfoSchema } from "../proto/index.js";
import type { ContainerChange } from "../container/index.js";
import { describeCaller, type CallContext, type Client, type ImplOf } from "../rpc/index.js";
import type { VmChange, VmManager } from "../vm/index.js";
import { ContainerPublisher } from "./container-publisher.js";
import { routedContainerService, type ContainerClient, type ContainerImpl } from "./container-routing.js";
import type { ContainerNode } from "./container-table.js";
import { startElection, type ElectionHandle } from "./wiring.js";
import { schedulerMetrics } from "./metrics.js";
import { Placer } from "./placer.js";
import { Publisher } from "./publisher.js";
import { routedVmService, type VmClient } from "./routing.js";
import { commitContainerHere, commitHere, schedulerService } from "./service.js";
import { EVICTION_TABLE, HOST_TABLE, VM_TABLE, VmTables } from "./vm-table.js";
import { ServedBeatStreams } from "./beat-stream.js";

type SchedClient = Client<typeof SchedulerService.method>;
type VmImpl = ImplOf<typeof VmService>;

export interface SchedulerDeps {
  membership: Membership;
  /** Where the cluster tables live (ObjectStoreDeps.tables must include SCHEDULER_TABLES). */
  objectStore: { clusterTable(name: string): ClusterTable };
  /** The VM subsystem, started before this one. */
  vm: { manager?: VmManager };
  /** This node's containers once the container subsystem has them (absent: no containers here). */
  containers?: () => ContainerNode | undefined;
}

const REMOVED_TABLE = "removed-nodes";

/**
 * A service implementation that answers from `impl()` once the scheduler has
 * built it (start), and until then refuses every call as unavailable; the
 * methods named in `streams` are server streams, refused as a failing stream.
 */
function untilStarted<T extends object>(impl: () => T | undefined, streams: readonly string[]): T {
  const notYet = () => new ThocError("unavailable", "the scheduler is starting: try again in a moment");
  return new Proxy({} as T, {
    get(_t, prop: string) {
      return (...args: unknown[]) => {
        const it = impl() as Record<string, (...a: unknown[]) => unknown> | undefined;
        if (!it) {
          if (streams.includes(prop)) return (async function* () { throw notYet(); })();
          return Promise.reject(notYet());
        }
        return it[prop]!(...args);
      };
    },
  });
}

export class SchedulerSubsystem implements Subsystem {
  readonly name = "scheduler";
  private routed?: VmImpl;
  private routedCt?: ContainerImpl;
  private localCt?: ContainerImpl;
  private publisher?: Publisher;
  private ctPublisher?: ContainerPublisher;
  private election?: ElectionHandle;
  private pools: { close(): void }[] = [];
  private readonly beats = new ServedBeatStreams();
  private view?: ClusterView;
  /** This node's VM tables and id once start() has them (autostartVeto waits for them). */
  private tables?: { t: VmTables; self: string };
  private tablesReady!: () => void;
  private readonly tablesSet = new Promise<void>((r) => { this.tablesReady = r; });

  constructor(private readonly deps: SchedulerDeps) {}

  /** For the VM and container subsystems' autostart: why this node must not start its VM or container again (VmTables.autostartVeto). */
  async autostartVeto(r: { name: string; uuid: string }): Promise<string | undefined> {
    // The VM subsystem starts before this one: wait for the tables, but not forever (a start that failed).
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.tablesSet, new Promise<void>((res) => { timer = setTimeout(res, 30_000); timer.unref(); })]).finally(() => clearTimeout(timer));
    return this.tables?.t.autostartVeto(this.tables.self, r);
  }

  /** For the VM subsystem: its local VmService, wrapped so every agent answers for the whole cluster. */
  routeVmService(local: VmImpl): VmImpl {
    this.local = local;
    return untilStarted(() => this.routed, ["console", "logs"]);
  }
  private local?: VmImpl;

  /** For the container subsystem: its local ContainerService, wrapped so every agent answers for the whole cluster. */
  routeContainerService(local: ContainerImpl): ContainerImpl {
    this.localCt = local;
    return untilStarted(() => this.routedCt, ["containerLogs", "exec"]);
  }

  /** For the container subsystem: every change of a container record goes to the cluster's table. */
  onContainerChange(c: ContainerChange): void {
    void this.ctPublisher?.onChange(c);
  }

  /** For the VM subsystem: every change of a VM record goes to the cluster's VM table. */
  onVmChange(c: VmChange): void {
    void this.publisher?.onChange(c);
  }

  async start(ctx: AgentContext): Promise<void> {
    const { config } = ctx;
    const log = ctx.log.child({ subsystem: this.name });
    const manager = this.deps.vm.manager;
    if (!manager || !this.local) throw new ThocError("failed_precondition", "the scheduler needs the VM subsystem started first, with routeVmService wired (agent/root.ts)");
    const m = this.deps.membership;
    const os = this.deps.objectStore;
    const tables = new VmTables(os.clusterTable(VM_TABLE), os.clusterTable(HOST_TABLE), os.clusterTable(EVICTION_TABLE));
    this.tables = { t: tables, self: ctx.nodeId };
    this.tablesReady();
    const view = clusterView(m, { id: ctx.nodeId, grpcAddress: () => ctx.addresses.grpc });
    this.view = view;
    const self = { id: ctx.nodeId, name: config.name };
    const nodeName = (id: string) => (id === self.id ? self.name : m.member(id)?.meta.name || m.member(id)?.name || tables.host(id)?.name || id);
    const transport = ctx.peerTransport;
    const auth = new PeerAuth({ clusterName: config.cluster.name, keys: config.cluster.keys, nodeId: ctx.nodeId, ...(transport ? { checkCaller: transport.checkCaller.bind(transport) } : {}) });
    const credentials = transport?.credentials ?? peerCredentials(config.tls);
    const sched = new PeerPool<typeof SchedulerService.method, SchedClient>({ service: SchedulerService, directory: view, make: (_id, c) => c, credentials, auth });
    const vms = new PeerPool<typeof VmService.method, VmClient>({ service: VmService, directory: view, make: (_id, c) => c, credentials, auth });
    this.pools = [sched, vms];

    const metrics = schedulerMetrics(ctx);
    const containers = () => this.deps.containers?.();
    const cts = new PeerPool<typeof ContainerService.method, ContainerClient>({ service: ContainerService, directory: view, make: (_id, c) => c, credentials, auth });
    this.pools.push(cts);
    const ctPublisher = new ContainerPublisher({ tables, nodeId: self.id, node: containers, log });
    this.ctPublisher = ctPublisher;
    this.publisher = new Publisher({
      tables, nodeId: self.id, manager: () => manager, log, intervalMs: Math.max(1000, Math.min(config.metrics.collectInterval, 5000)), containers: ctPublisher,
      host: async () => {
        const c = ctx.capacity();
        return {
          id: self.id, name: self.name, cpus: c.cpus, memoryBytes: c.memoryBytes, diskFreeBytes: c.diskFreeBytes, loadFactor: config.limits.loadFactor,
          gpus: await manager.gpus().catch(() => []), version: ctx.version, containers: containers()?.available() ?? false,
        };
      },
    });

    const election = await startElection({ ctx, log, view, membership: m, sched, metrics, nodeName, removed: os.clusterTable(REMOVED_TABLE) });
    this.election = election;
    // A new leader pulls the VM table once per term; later creates read its own copy.
    let synced: { term: number; p: Promise<void> } | undefined;
    const sync = () => {
      const term = election.election.status().term;
      if (synced?.term !== term) synced = { term, p: tables.vms.pull().then(() => undefined, () => undefined) };
      return synced.p;
    };
    const placer = new Placer({
      synced: sync,
      tables, fence: () => election.election.fence(), isUp: (id) => view.isUp(id), nodeName, strategy: () => config.scheduler.strategy, log,
      observe: (s, outcome) => metrics.placement.observe({ outcome }, s),
      commit: async (nodeId, term, req) => {
        if (nodeId === self.id) return commitHere({ fence: election.fence, tables, self, manager: () => manager, publisher: this.publisher! }, term, self.id, req);
        return (await sched.get(nodeId).commit({ term: BigInt(term), leader: self.id, create: req }, { timeoutMs: 180_000 })).vm!;
      },
      commitContainer: async (nodeId, term, req) => {
        if (nodeId === self.id) return commitContainerHere({ fence: election.fence, tables, self, containers, ctPublisher }, term, self.id, req);
        // An image pull may take minutes on the node.
        return (await sched.get(nodeId).commitContainer({ term: BigInt(term), leader: self.id, create: req }, { timeoutMs: 600_000 })).container!;
      },
      containerSpec: () => { const n = containers(); return n ? (pb) => n.specFromPb(pb) : undefined; },
    });

    const leaderInfo = async (): Promise<MessageInitShape<typeof LeaderInfoSchema>> => {
      const s = election.election.status();
      let voters: { id: string; state: string }[] = s.voters;
      if (s.role !== "leader" && s.leader && view.isUp(s.leader)) {
        // The leader knows which voters answer; ask it, and fall back on this node's view.
        try {
          const r = await sched.get(s.leader).getLeader({}, { timeoutMs: 1000 });
          if (Number(r.term) === s.term) voters = r.voters.map((v) => ({ id: v.id, state: v.state }));
        } catch { /* this node's view */ }
      }
      const lead = s.leader;
      return {
        leader: lead ? { id: lead, name: nodeName(lead), grpcAddress: view.address(lead) ?? "" } : undefined,
        term: BigInt(s.term), sinceMs: BigInt(s.leaderSince ?? 0), role: s.role,
        voters: voters.map((v) => ({ id: v.id, name: nodeName(v.id), state: v.state })),
        configVersion: BigInt(s.config.version), configCommitted: s.configCommitted, acting: s.acting,
        nodeId: self.id, nodeName: self.name,
      };
    };

    /** A create placed here when this node leads, else forwarded to the leader. */
    const toLeader = async <T>(here: () => Promise<T>, there: (leader: string) => Promise<T>): Promise<T> => {
      // The leader may be changing: retry while it is (the request id makes a retry harmless).
      const deadline = Date.now() + Math.max(5000, config.scheduler.electionTimeout * 6);
      for (;;) {
        const s = election.election.status();
        try {
          if (s.role === "leader") return await here();
          if (!s.leader) throw new ThocError("unavailable", `no scheduler leader: ${election.noLeaderReason()}`);
          return await there(s.leader);
        } catch (err) {
          const e = ThocError.from(err);
          if (e.code !== "unavailable" || Date.now() > deadline) throw e;
          await new Promise((r) => setTimeout(r, Math.min(200, config.scheduler.heartbeatInterval * 2)));
        }
      }
    };
    const forward = (req: CreateVmRequest, onBehalfOf: string) =>
      toLeader(() => placer.place(req), async (leader) => ({ ...(await sched.get(leader).place({ create: req, onBehalfOf }, { timeoutMs: 180_000 })).vm! }));
    const forwardContainer = (req: CreateContainerRequest, onBehalfOf: string) =>
      toLeader(() => placer.placeContainer(req), async (leader) => ({ ...(await sched.get(leader).placeContainer({ create: req, onBehalfOf }, { timeoutMs: 600_000 })).container! }));

    const svc = schedulerService({ self, election: election.election, fence: election.fence, placer, manager: () => manager, publisher: this.publisher, containers, ctPublisher, tables, leaderInfo, forward, log, noLeaderReason: () => election.noLeaderReason(), beats: this.beats });
    const guarded = authenticated(SchedulerService, svc, auth);
    // GetLeader is an operator's read (role viewer, no peer MAC); the rest are node-to-node.
    ctx.rpc.add(SchedulerService, { ...guarded, getLeader: svc.getLeader });

    this.routed = routedVmService({
      self, local: this.local, manager, tables, view, nodeName, peers: vms, dev: config.dev,
      downSince: (id) => m.member(id)?.stateChangedAt,
      // Through forward() on the leader too: a lease that lapses for a moment is retried with the same request id.
      create: async (req, c: CallContext) => ({ vm: await forward(req, describeCaller(c.caller)) }),
    });
    if (this.localCt) {
      this.routedCt = routedContainerService({
        self, local: this.localCt, node: containers, tables, view, nodeName, peers: cts, dev: config.dev,
        downSince: (id) => m.member(id)?.stateChangedAt,
        create: async (req, c: CallContext) => ({ container: await forwardContainer(req, describeCaller(c.caller)) }),
      });
    }
    await election.start();
    this.publisher.start();
  }

  /** Open heartbeat streams end now: the gRPC drain that follows waits for every open stream. */
  quiesce(): void {
    this.beats.close();
  }

  async stop(): Promise<void> {
    this.beats.close();
    await this.election?.stop();
    await this.publisher?.stop();
    for (const p of this.pools) p.close();
  }

  health(): SubsystemHealth {
    if (!this.election) return { status: "starting" };
    // A node without a leader still serves S3 and its VMs: the detail says so, readiness does not fail.
    return { status: "up", detail: this.election.summary() };
  }
}
