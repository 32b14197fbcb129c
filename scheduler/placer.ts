/**
 * The leader's half of a create: check the name against the cluster, build
 * every node's view (capacity from the host table, committed allocations
 * from the VM table, plus what this leader placed a moment ago and the
 * table has not shown yet), rank the nodes (placement.ts), and send a fenced
 * Commit to the best one; the node re-checks with the same fit() and may
 * refuse (it raced another create), and then the next candidate gets it.
 * Every command carries the term from fence(), which throws once this node
 * is no longer the acting leader, so a deposed leader stops at the next step.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { decodeHlc } from "../cluster/index.js";
import { ThocError } from "../errors/index.js";
import type { CreateVmRequest, VmSchema } from "../proto/index.js";
import { specFromPb, validateSpec, type Reservation } from "../vm/index.js";
import { rankNodes, noPlacementError, type NodeView, type PlacementRequest, type Strategy } from "./placement.js";
import { entryToPb } from "./routing.js";
import type { VmTables } from "./vm-table.js";

type VmInit = MessageInitShape<typeof VmSchema>;

export interface PlacerOptions {
  tables: VmTables;
  /** The term to send, or throws unavailable: not the leader, or the lease has lapsed. */
  fence(): number;
  isUp(nodeId: string): boolean;
  nodeName(nodeId: string): string;
  /** The fenced create on a node (this one or a peer). */
  commit(nodeId: string, term: number, req: CreateVmRequest): Promise<VmInit>;
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

export class Placer {
  private readonly inflight = new Map<string, string>();
  /** Placed here, not yet in this node's copy of the VM table: name -> node and reservation. */
  private readonly recent = new Map<string, { nodeId: string; r: Reservation & { group?: string }; at: number }>();

  constructor(private readonly o: PlacerOptions) {}

  /** Every node's view as this leader has it (no network). */
  views(): NodeView[] {
    const byNode = new Map<string, (Reservation & { group?: string })[]>();
    for (const e of this.o.tables.all()) {
      const list = byNode.get(e.nodeId) ?? [];
      list.push({ name: e.name, vcpus: e.vcpus, ramMB: e.ramMB, gpus: e.gpus, ...(e.group ? { group: e.group } : {}) });
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
    return this.o.tables.hostsNow().map((h) => ({
      id: h.id, name: this.o.nodeName(h.id) || h.name, up: this.o.isUp(h.id),
      capacity: { cpus: h.cpus, memoryBytes: h.memoryBytes, gpus: h.gpus, loadFactor: h.loadFactor },
      diskFreeBytes: h.diskFreeBytes, allocations: byNode.get(h.id) ?? [],
    }));
  }

  async place(req: CreateVmRequest): Promise<VmInit> {
    const started = process.hrtime.bigint();
    let outcome: "ok" | "refused" | "error" = "error";
    try {
      const vm = await this.placeOnce(req);
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

  private async placeOnce(req: CreateVmRequest): Promise<VmInit> {
    let term = this.o.fence();
    // Names, images, sizes: refused here with the node's own words, before any node is asked.
    const spec = validateSpec(specFromPb(req.spec), { cpus: Number.MAX_SAFE_INTEGER, memoryBytes: Number.MAX_SAFE_INTEGER }, { bridge: "br0" });
    if (req.group && !GROUP_RE.test(req.group)) throw new ThocError("invalid_argument", `group "${req.group}": use 1-63 lowercase letters, digits and '-', starting with a letter or digit`, { field: "group" });
    await this.o.synced?.();
    const had = this.o.tables.local(spec.name);
    if (had) {
      if (req.requestId && had.requestId === req.requestId) return entryToPb(had, this.o.isUp(had.nodeId), this.o.nodeName(had.nodeId));
      throw new ThocError("already_exists", `a VM named ${spec.name} already exists on node ${this.o.nodeName(had.nodeId)}: VM names are unique in the cluster; pick another name or delete it (thoc-node vm delete ${spec.name})`, { vm: spec.name });
    }
    const racing = this.inflight.get(spec.name);
    if (racing !== undefined) {
      throw new ThocError(racing === req.requestId ? "aborted" : "already_exists", `a VM named ${spec.name} is being created right now${racing === req.requestId ? " by this same request: wait for it" : ": pick another name"}`, { vm: spec.name });
    }
    this.inflight.set(spec.name, req.requestId);
    try {
      const preq: PlacementRequest = {
        fit: { name: spec.name, vcpus: spec.vcpus, ramMB: spec.ramMB, ...(spec.gpu ? { gpu: spec.gpu } : {}) },
        diskGB: spec.diskGB, image: spec.image, ...(req.group ? { group: req.group } : {}), ...(req.node ? { node: req.node } : {}),
      };
      const nodes = this.views();
      const { ranked, refused } = rankNodes(preq, nodes, this.o.strategy());
      if (!ranked.length) throw noPlacementError(preq, refused, nodes);
      const tried: string[] = [];
      for (const cand of ranked.slice(0, this.o.maxAttempts ?? 5)) {
        term = this.o.fence();
        const placedAt = Date.now();
        try {
          const vm = await this.o.commit(cand.id, term, req);
          this.recent.set(spec.name, { nodeId: cand.id, at: placedAt, r: { name: spec.name, vcpus: spec.vcpus, ramMB: spec.ramMB, gpus: [], ...(req.group ? { group: req.group } : {}) } });
          return { ...vm, nodeId: cand.id };
        } catch (err) {
          const e = ThocError.from(err);
          if (!TRY_NEXT.has(e.code)) throw e;
          this.o.log?.info({ vm: spec.name, node: cand.name, code: e.code, err: e.message }, "scheduler: node refused the placement; trying the next candidate");
          tried.push(`${cand.name}: ${e.message}`);
        }
      }
      throw new ThocError("resource_exhausted", `no node took VM ${spec.name}: ${tried.join("; ")}`, { vm: spec.name });
    } finally {
      this.inflight.delete(spec.name);
    }
  }
}
