/**
 * The ring state: which nodes own positions on the ring, as a state-based CRDT
 * every node keeps, gossips (GetRing/MergeRing) and persists. The ring is NOT
 * the liveness view: a node enters when it first joins and leaves only when an
 * operator removes it; being down changes nothing here.
 *
 * Per node, every field is a max over a total order, so merge is commutative,
 * associative and idempotent, and nodes that merged the same updates in any
 * order hold the same state and compute the same preference lists:
 *   - addedAt:    max HLC of the joins (an observed-remove set with one tag per node);
 *   - removedAdd: max addedAt an operator's remove observed. The node is active iff
 *     addedAt > removedAdd, so a remove kills exactly the joins it saw and a join
 *     it did not see wins (add-wins), whatever the wall clocks say;
 *   - removedAt:  max HLC of the removes (shown to operators, not used for membership);
 *   - (updatedAt, name, weight): a last-writer-wins register for renames and
 *     capacity changes, ties broken by the value so the order stays total.
 */
import { createHash } from "node:crypto";
import { ThocError } from "../../errors/index.js";
import { compareHlc, isHlc, maxHlc } from "../../cluster/index.js";
import { Ring } from "./ring.js";

export interface RingMember {
  nodeId: string;
  name: string;
  weight: number;
  addedAt: string;
  updatedAt: string;
  removedAdd?: string;
  removedAt?: string;
}

export interface RingStateData {
  members: RingMember[];
}

export function isActive(m: RingMember): boolean {
  return m.removedAdd === undefined || compareHlc(m.addedAt, m.removedAdd) > 0;
}

function registerCmp(a: RingMember, b: RingMember): number {
  return compareHlc(a.updatedAt, b.updatedAt) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) || a.weight - b.weight;
}

/** The join (least upper bound) of two states of one node. */
export function mergeMember(a: RingMember, b: RingMember): RingMember {
  const reg = registerCmp(a, b) >= 0 ? a : b;
  const out: RingMember = {
    nodeId: a.nodeId,
    name: reg.name,
    weight: reg.weight,
    updatedAt: reg.updatedAt,
    addedAt: maxHlc(a.addedAt, b.addedAt)!,
  };
  const removedAdd = maxHlc(a.removedAdd, b.removedAdd);
  const removedAt = maxHlc(a.removedAt, b.removedAt);
  if (removedAdd !== undefined) out.removedAdd = removedAdd;
  if (removedAt !== undefined) out.removedAt = removedAt;
  return out;
}

function validMember(m: unknown): m is RingMember {
  if (!m || typeof m !== "object") return false;
  const r = m as Record<string, unknown>;
  const optHlc = (v: unknown) => v === undefined || (typeof v === "string" && isHlc(v));
  return typeof r.nodeId === "string" && r.nodeId.length > 0 && typeof r.name === "string"
    && typeof r.weight === "number" && r.weight > 0 && Number.isFinite(r.weight)
    && typeof r.addedAt === "string" && isHlc(r.addedAt) && typeof r.updatedAt === "string" && isHlc(r.updatedAt)
    && optHlc(r.removedAdd) && optHlc(r.removedAt);
}

export class RingState {
  private readonly members = new Map<string, RingMember>();
  /** Dropped on every change. */
  private cached?: { vnodes: number; ring: Ring };

  static fromJSON(data: unknown): RingState {
    const s = new RingState();
    const members = (data as RingStateData | undefined)?.members;
    if (!Array.isArray(members)) throw new ThocError("invalid_argument", "ring state: expected {members: [...]}");
    for (const m of members) {
      if (!validMember(m)) throw new ThocError("invalid_argument", `ring state: malformed member ${JSON.stringify(m).slice(0, 200)}`);
      s.mergeOne(m);
    }
    return s;
  }

  toJSON(): RingStateData {
    return { members: [...this.members.values()].sort((a, b) => (a.nodeId < b.nodeId ? -1 : 1)).map((m) => ({ ...m })) };
  }

  clone(): RingState {
    return RingState.fromJSON(this.toJSON());
  }

  get(nodeId: string): RingMember | undefined {
    const m = this.members.get(nodeId);
    return m && { ...m };
  }

  all(): RingMember[] {
    return this.toJSON().members;
  }

  active(): RingMember[] {
    return this.all().filter(isActive);
  }

  /**
   * A node's first join. A node already known (even removed) is left alone:
   * restarts must not move data, and a removed node must be wiped (new id) to
   * come back. Returns whether the state changed.
   */
  join(nodeId: string, name: string, weight: number, at: string): boolean {
    if (this.members.has(nodeId)) return false;
    return this.mergeOne({ nodeId, name, weight, addedAt: at, updatedAt: at });
  }

  /** An operator's remove: a tombstone over the joins this node has seen. */
  remove(nodeId: string, at: string): boolean {
    const m = this.members.get(nodeId);
    if (!m) throw new ThocError("not_found", `ring: no node ${nodeId} (list the ring to see node ids)`, { nodeId });
    if (!isActive(m)) return false;
    return this.mergeOne({ ...m, removedAdd: m.addedAt, removedAt: at });
  }

  /** Rename or re-weigh (capacity changed); last writer wins. */
  update(nodeId: string, change: { name?: string; weight?: number }, at: string): boolean {
    const m = this.members.get(nodeId);
    if (!m) throw new ThocError("not_found", `ring: no node ${nodeId}`, { nodeId });
    return this.mergeOne({ ...m, name: change.name ?? m.name, weight: change.weight ?? m.weight, updatedAt: at });
  }

  /** Merges another node's state; returns whether ours changed. */
  merge(other: RingState | RingStateData): boolean {
    const data = other instanceof RingState ? other.toJSON() : RingState.fromJSON(other).toJSON();
    let changed = false;
    for (const m of data.members) changed = this.mergeOne(m) || changed;
    return changed;
  }

  private mergeOne(m: RingMember): boolean {
    const cur = this.members.get(m.nodeId);
    const next = mergeMember(cur ?? m, m); // also puts the fields in canonical order
    if (cur && JSON.stringify(cur) === JSON.stringify(next)) return false;
    this.members.set(m.nodeId, next);
    this.cached = undefined;
    return true;
  }

  /** Equal digests ⇔ equal states (canonical JSON): a cheap check before exchanging whole states. */
  digest(): string {
    return createHash("sha256").update(JSON.stringify(this.toJSON())).digest("hex");
  }

  /** The ring of active members (cached until the state changes). */
  ring(vnodes: number): Ring {
    if (this.cached?.vnodes === vnodes) return this.cached.ring;
    const ring = new Ring(this.active().map((m) => ({ nodeId: m.nodeId, weight: m.weight })), vnodes);
    this.cached = { vnodes, ring };
    return ring;
  }

  /** Weights of active members, for balance reports. */
  weights(): Map<string, number> {
    return new Map(this.active().map((m) => [m.nodeId, m.weight]));
  }
}
