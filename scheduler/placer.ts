/**
 * The leader's half of a create: check the name against the cluster, build
 * every node's view (capacity from the host table, committed allocations
 * from the VM table, plus what this leader placed a moment ago and the
 * table has not shown yet), rank the nodes (placement.ts), and send a fenced
 * Commit to the best one; the node re-checks with the same fit() and may
 * refuse (it raced another create), and then the next candidate gets it.
 * Every command carries the term from fence(), which throws once this node
 * is no longer the acting leader, so a deposed leader stops at the next step.
 *
 * Containers go the same way (placeContainer, CommitContainer): one table,
 * so names are unique across VMs and containers and each node's allocations
 * count both.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { decodeHlc } from "../cluster/index.js";
import { ThocError } from "../errors/index.js";
import type { ContainerSpec } from "../container/index.js";
import type { CreateContainerRequest, CreateVmRequest, VmSchema, ContainerSpec as ContainerSpecPb } from "../proto/index.js";
import { specFromPb, validateSpec } from "../vm/index.js";
import { containerEntryToPb, containerPlacement, type ContainerInit } from "./container-table.js";
import { rankNodes, noPlacementError, type GroupedReservation, type NodeView, type PlacementRequest, type Strategy } from "./placement.js";
import { entryToPb } from "./routing.js";
import { isContainer, reservationOf, type VmEntry, type VmTables } from "./vm-table.js";

type VmInit = MessageInitShape<typeof VmSchema>;

export interface PlacerOptions {
  tables: VmTables;
  /** The term to send, or throws unavailable: not the leader, or the lease has lapsed. */
  fence(): number;
  isUp(nodeId: string): boolean;
  nodeName(nodeId: string): string;
  /** The fenced create on a node (this one or a peer). */
  commit(nodeId: string, term: number, req: CreateVmRequest): Promise<VmInit>;
  /** The fenced container create on a node; absent, container creates are refused. */
  commitContainer?(nodeId: string, term: number, req: CreateContainerRequest): Promise<ContainerInit>;
  /** container/'s spec validation when this node has the container subsystem (else placement's own checks). */
  containerSpec?: () => ((pb: ContainerSpecPb) => ContainerSpec) | undefined;
  strategy: () => Strategy;
  /** Seconds a placement took, for the histogram. */
  observe?(seconds: number, outcome: "ok" | "refused" | "error"): void;
  /**
   * Resolves once this leader has pulled the VM table from the live nodes in
   * its term: after that its own copy (kept current by every node's pushes)
   * answers whether a name is taken, with no network round per create.
   */
  synced?: () => Promise<void>;
  /** How many candidates are tried before giving up (a raced node refuses; the next is asked). */
  maxAttempts?: number;
  log?: { info(o: object, m: string): void; warn(o: object, m: string): void };
}

/** Codes a node answers when another candidate may still work. */
const TRY_NEXT = new Set(["resource_exhausted", "unavailable", "deadline_exceeded", "aborted", "cancelled", "internal", "unknown"]);
const GROUP_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** Fractional CPUs (containers) summed to the thousandth, so 0.1 + 0.2 never reads as more than 0.3. */
const milli = (n: number) => Math.round(n * 1000) / 1000;

/** One create, VM or container, as placement sees it. */
interface Workload { kind: "vm" | "container"; name: string; requestId: string; group: string; node: string; preq: PlacementRequest }

export class Placer {
  /** Names being placed right now: the request and its kind. */
  private readonly inflight = new Map<string, { requestId: string; kind: Workload["kind"] }>();
  /** Placed here, not yet in this node's copy of the VM table: name -> node and reservation. */
  private readonly recent = new Map<string, { nodeId: string; r: GroupedReservation; at: number }>();

  constructor(private readonly o: PlacerOptions) {}

  /** Every node's view as this leader has it (no network). */
  views(): NodeView[] {
    const byNode = new Map<string, GroupedReservation[]>();
    for (const e of this.o.tables.all()) {
      const list = byNode.get(e.nodeId) ?? [];
      list.push(reservationOf(e));
      byNode.set(e.nodeId, list);
    }
    const now = Date.now();
    for (const [name, p] of this.recent) {
      // Gone once the table has caught up with the placement: an entry (or a delete: the VM may be gone already) written since.
      const seen = this.o.tables.vms.table.entry(name);
      if ((seen && decodeHlc(seen.version).physical >= p.at - 1000) || now - p.at > 60_000) { this.recent.delete(name); continue; }
      const list = byNode.get(p.nodeId) ?? [];
      list.push(p.r);
      byNode.set(p.nodeId, list);
    }
    return this.o.tables.hostsNow().map((h) => {
      const allocations = byNode.get(h.id) ?? [];
      let vcpus = 0, ramMB = 0;
      for (const a of allocations) { vcpus += a.vcpus; ramMB += a.ramMB; }
      return {
        id: h.id, name: this.o.nodeName(h.id) || h.name, up: this.o.isUp(h.id),
        capacity: { cpus: h.cpus, memoryBytes: h.memoryBytes, gpus: h.gpus, loadFactor: h.loadFactor },
        diskFreeBytes: h.diskFreeBytes, allocations, used: { vcpus: milli(vcpus), ramMB },
        ...(h.containers !== undefined ? { containers: h.containers } : {}),
      };
    });
  }

  async place(req: CreateVmRequest): Promise<VmInit> {
    return this.timed(() => this.placeVm(req));
  }

  /** A container create: placed like a VM, plus the engine and host-port filters; committed with CommitContainer. */
  async placeContainer(req: CreateContainerRequest): Promise<ContainerInit> {
    return this.timed(() => this.placeCt(req));
  }

  private async timed<T>(fn: () => Promise<T>): Promise<T> {
    const started = process.hrtime.bigint();
    let outcome: "ok" | "refused" | "error" = "error";
    try {
      const vm = await fn();
      outcome = "ok";
      return vm;
    } catch (err) {
      const e = ThocError.from(err);
      if (e.code === "resource_exhausted" || e.code === "already_exists" || e.code === "invalid_argument" || e.code === "not_found") outcome = "refused";
      throw e;
    } finally {
      this.o.observe?.(Number(process.hrtime.bigint() - started) / 1e9, outcome);
    }
  }

  private async placeVm(req: CreateVmRequest): Promise<VmInit> {
    this.o.fence();
    // Names, images, sizes: refused here with the node's own words, before any node is asked.
    const spec = validateSpec(specFromPb(req.spec), { cpus: Number.MAX_SAFE_INTEGER, memoryBytes: Number.MAX_SAFE_INTEGER }, { bridge: "br0" });
    const w: Workload = {
      kind: "vm", name: spec.name, requestId: req.requestId, group: req.group, node: req.node,
      preq: {
        fit: { name: spec.name, vcpus: spec.vcpus, ramMB: spec.ramMB, ...(spec.gpu ? { gpu: spec.gpu } : {}) },
        diskGB: spec.diskGB, image: spec.image, ...(req.group ? { group: req.group } : {}), ...(req.node ? { node: req.node } : {}),
      },
    };
    return this.placeWorkload(w, (e) => entryToPb(e, this.o.isUp(e.nodeId), this.o.nodeName(e.nodeId)), async (nodeId, term) => ({ ...(await this.o.commit(nodeId, term, req)), nodeId }));
  }

  private async placeCt(req: CreateContainerRequest): Promise<ContainerInit> {
    this.o.fence();
    const commit = this.o.commitContainer;
    if (!commit) throw new ThocError("unimplemented", "this scheduler places no containers");
    const p = containerPlacement(req.spec, this.o.containerSpec?.());
    const w: Workload = {
      kind: "container", name: p.fit.name, requestId: req.requestId, group: req.group, node: req.node,
      preq: { kind: "container", fit: p.fit, diskGB: 0, image: p.image, ports: p.ports, ...(req.group ? { group: req.group } : {}), ...(req.node ? { node: req.node } : {}) },
    };
    return this.placeWorkload(w, (e) => containerEntryToPb(e, this.o.isUp(e.nodeId), this.o.nodeName(e.nodeId)), async (nodeId, term) => ({ ...(await commit(nodeId, term, req)), nodeId }));
  }

  private async placeWorkload<T>(w: Workload, existing: (e: VmEntry) => T, commit: (nodeId: string, term: number) => Promise<T>): Promise<T> {
    const noun = w.kind === "vm" ? "VM" : "container";
    const { name } = w;
    if (w.group && !GROUP_RE.test(w.group)) throw new ThocError("invalid_argument", `group "${w.group}": use 1-63 lowercase letters, digits and '-', starting with a letter or digit`, { field: "group" });
    await this.o.synced?.();
    const had = this.o.tables.local(name);
    if (had) {
      const hadKind = isContainer(had) ? "container" : "vm";
      if (w.requestId && had.requestId === w.requestId && hadKind === w.kind) return existing(had);
      const how = hadKind === "vm" ? `thoc-node vm delete ${name}` : `thoc-node ct delete ${name}`;
      throw new ThocError("already_exists", `a ${hadKind === "vm" ? "VM" : "container"} named ${name} already exists on node ${this.o.nodeName(had.nodeId)}: names are unique in the cluster, across VMs and containers; pick another name or delete it (${how})`, { [w.kind]: name });
    }
    const racing = this.inflight.get(name);
    if (racing !== undefined) {
      const same = racing.requestId === w.requestId;
      throw new ThocError(same ? "aborted" : "already_exists", `a ${racing.kind === "vm" ? "VM" : "container"} named ${name} is being created right now${same ? " by this same request: wait for it" : ": pick another name"}`, { [w.kind]: name });
    }
    this.inflight.set(name, { requestId: w.requestId, kind: w.kind });
    try {
      const nodes = this.views();
      const { ranked, refused } = rankNodes(w.preq, nodes, this.o.strategy());
      if (!ranked.length) throw noPlacementError(w.preq, refused, nodes);
      const tried: string[] = [];
      for (const cand of ranked.slice(0, this.o.maxAttempts ?? 5)) {
        const term = this.o.fence();
        const placedAt = Date.now();
        try {
          const out = await commit(cand.id, term);
          const f = w.preq.fit;
          this.recent.set(name, {
            nodeId: cand.id, at: placedAt,
            r: { name, vcpus: f.vcpus, ramMB: f.ramMB, gpus: [], ...(w.group ? { group: w.group } : {}), ...(w.kind === "container" ? { kind: "container" as const, ports: w.preq.ports ?? [] } : {}) },
          });
          return out;
        } catch (err) {
          const e = ThocError.from(err);
          if (!TRY_NEXT.has(e.code)) throw e;
          this.o.log?.info({ [w.kind]: name, node: cand.name, code: e.code, err: e.message }, "scheduler: node refused the placement; trying the next candidate");
          tried.push(`${cand.name}: ${e.message}`);
        }
      }
      throw new ThocError("resource_exhausted", `no node took ${noun} ${name}: ${tried.join("; ")}`, { [w.kind]: name });
    } finally {
      this.inflight.delete(name);
    }
  }
}
