/**
 * The consistent-hash ring: ketama-style virtual nodes on a 48-bit circle.
 *
 * Our own code rather than the `hashring` package because placement must be a
 * pure function of the ring state on every node: hashring scales each node's
 * point count by weight / total weight (so adding one node re-cuts every other
 * node's points and moves more than its share of keys), orders equal hashes by
 * insertion order (two nodes that learned members in another order disagree),
 * and its range() is backed by an LRU cache. Here a node's points depend only
 * on its own id and weight, and points sort by (position, node id).
 *
 * Placement: a key's position is hash(placement key); its preference list is
 * the first N distinct nodes met walking clockwise from that position. Objects
 * use placementKey(bucket, key) = bucket + "/" + key (bucket names cannot hold
 * '/'), so one big bucket still spreads over every node.
 */
import { createHash } from "node:crypto";
import { ThocError } from "../../errors/index.js";

/** Positions are 48-bit integers: exact in a JS number, collisions negligible. */
export const RING_BITS = 48;
export const RING_SIZE = 2 ** RING_BITS;

export function ringHash(s: string): number {
  return createHash("md5").update(s).digest().readUIntBE(0, 6);
}

export function placementKey(bucket: string, key: string): string {
  return `${bucket}/${key}`;
}

export interface RingNode {
  nodeId: string;
  /** Relative capacity; points = max(1, round(vnodes * weight)). */
  weight: number;
}

interface Point {
  pos: number;
  node: string;
}

/** One arc of the circle: keys with start < position <= end (wrapping when start >= end). */
export interface RingSegment {
  start: number;
  end: number;
  /** Index of the point that owns the arc (its clockwise end). */
  point: number;
  /** The ring has one point, which owns the whole circle. */
  whole: boolean;
}

export class Ring {
  private readonly points: Point[];
  private readonly nodeIds: string[];

  constructor(nodes: readonly RingNode[], readonly vnodes = 128) {
    if (!Number.isInteger(vnodes) || vnodes < 1) throw new ThocError("invalid_argument", `ring: vnodes must be a positive integer, got ${vnodes}`);
    const ids = new Set<string>();
    const pts: Point[] = [];
    for (const n of nodes) {
      if (ids.has(n.nodeId)) throw new ThocError("invalid_argument", `ring: node ${n.nodeId} listed twice`);
      if (!(n.weight > 0) || !Number.isFinite(n.weight)) throw new ThocError("invalid_argument", `ring: node ${n.nodeId} has weight ${n.weight}; weights must be > 0`);
      ids.add(n.nodeId);
      const count = Math.max(1, Math.round(vnodes * n.weight));
      for (let i = 0; i < count; i++) pts.push({ pos: ringHash(`${n.nodeId}#${i}`), node: n.nodeId });
    }
    pts.sort((a, b) => a.pos - b.pos || (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
    this.points = pts;
    this.nodeIds = [...ids].sort();
  }

  get size(): number {
    return this.nodeIds.length;
  }

  get nodes(): readonly string[] {
    return this.nodeIds;
  }

  get pointCount(): number {
    return this.points.length;
  }

  has(nodeId: string): boolean {
    return this.nodeIds.includes(nodeId);
  }

  /** Index of the first point at or after pos (wrapping). */
  private pointAt(pos: number): number {
    let lo = 0;
    let hi = this.points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.points[mid]!.pos < pos) lo = mid + 1;
      else hi = mid;
    }
    return lo === this.points.length ? 0 : lo;
  }

  /** Every distinct node in clockwise order from a point: the preference list, then the stand-ins. */
  *walkFrom(point: number): Generator<string> {
    const seen = new Set<string>();
    const n = this.points.length;
    for (let i = 0; i < n && seen.size < this.nodeIds.length; i++) {
      const node = this.points[(point + i) % n]!.node;
      if (seen.has(node)) continue;
      seen.add(node);
      yield node;
    }
  }

  /** All nodes in placement order for a placement key. */
  walk(pkey: string): string[] {
    if (this.points.length === 0) return [];
    return [...this.walkFrom(this.pointAt(ringHash(pkey)))];
  }

  /** The first n distinct nodes for a placement key (fewer when the ring is smaller). */
  preferenceList(pkey: string, n: number): string[] {
    if (this.points.length === 0) return [];
    return this.preferenceAt(this.pointAt(ringHash(pkey)), n);
  }

  preferenceAt(point: number, n: number): string[] {
    // Hot path (every request): a plain loop, and n is small, so includes() beats a Set.
    const out: string[] = [];
    const want = Math.min(n, this.nodeIds.length);
    const len = this.points.length;
    for (let i = 0; i < len && out.length < want; i++) {
      const node = this.points[(point + i) % len]!.node;
      if (!out.includes(node)) out.push(node);
    }
    return out;
  }

  /** Every arc of the circle with the point that owns it. */
  segments(): RingSegment[] {
    const n = this.points.length;
    return this.points.map((p, i) => ({ start: this.points[(i - 1 + n) % n]!.pos, end: p.pos, point: i, whole: n === 1 }));
  }

  /**
   * Share of the key space each node holds: as primary (first in the list) and
   * as one of n replicas (summing to n when the ring has at least n nodes).
   */
  ownership(n = 1): Map<string, number> {
    const share = new Map<string, number>(this.nodeIds.map((id) => [id, 0]));
    if (this.points.length === 0) return share;
    for (const seg of this.segments()) {
      const len = seg.whole ? RING_SIZE : arcLength(seg.start, seg.end);
      for (const node of this.preferenceAt(seg.point, n)) share.set(node, share.get(node)! + len / RING_SIZE);
    }
    return share;
  }

  /**
   * Balance against each node's fair share (its weight / total weight):
   * ratio = share / fair share, spread = max ratio - min ratio.
   */
  balance(weights: ReadonlyMap<string, number>): { ratios: Map<string, number>; min: number; max: number; spread: number } {
    const own = this.ownership(1);
    const total = [...own.keys()].reduce((s, id) => s + (weights.get(id) ?? 0), 0);
    const ratios = new Map<string, number>();
    for (const [id, share] of own) ratios.set(id, share / ((weights.get(id) ?? 0) / total));
    const vals = [...ratios.values()];
    const min = Math.min(...vals);
    const max = Math.max(...vals);
    return { ratios, min, max, spread: max - min };
  }
}

/** Length of the arc (start, end] on the circle (0 when two points share a position). */
export function arcLength(start: number, end: number): number {
  return end >= start ? end - start : RING_SIZE - start + end;
}

/** Whether position pos lies on the segment's arc (start, end]. */
export function inSegment(pos: number, seg: Pick<RingSegment, "start" | "end" | "whole">): boolean {
  if (seg.whole) return true;
  const { start, end } = seg;
  if (start === end) return false;
  return start < end ? pos > start && pos <= end : pos > start || pos <= end;
}

/**
 * Weight from disk capacity: 1 per TiB in steps of 1/4, at least 1 — so small
 * (dev, test) disks all weigh the same and keep vnodes points each, while a
 * 10 TiB node takes ten times the keys of a 1 TiB one.
 */
export function weightForDisk(diskBytes: number): number {
  const tib = diskBytes / 2 ** 40;
  return Math.max(1, Math.round(tib * 4) / 4);
}

/**
 * True when `self` is the first live node of the key's preference list (of
 * length n): background workers that act on a key (part sweeper, lifecycle)
 * act only there, so exactly one node acts on it, and the next one takes
 * over while it is down.
 */
export function actsFor(ring: Ring, n: number, bucket: string, key: string, self: string, isUp: (id: string) => boolean): boolean {
  return ring.preferenceList(placementKey(bucket, key), n).find((id) => id === self || isUp(id)) === self;
}
