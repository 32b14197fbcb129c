/**
 * Hybrid logical clock (Kulkarni et al., 2014): timestamps that follow wall
 * time closely, never go backwards on one node even when the wall clock does,
 * and move past every timestamp a node has received, so a write that causally
 * follows another always gets a larger version. The node id breaks ties, so
 * two nodes never mint equal timestamps and every node orders versions alike.
 *
 * Encoded as fixed-width, lexicographically sortable strings (ObjectMeta.version):
 *   <physical ms, 12 hex>.<logical, 8 hex>.<node id>
 * String order equals (physical, logical, node) order because the first two
 * fields have a fixed width and the node id comes last.
 */
import { realClock, type WallClock } from "../core/index.js";
import { ThocError } from "../errors/index.js";

export interface Hlc {
  /** Wall-clock milliseconds (the largest seen). */
  physical: number;
  /** Counter within one physical millisecond. */
  logical: number;
  node: string;
}

const PHYS_HEX = 12;
const LOGICAL_HEX = 8;
const MAX_LOGICAL = 0xffffffff;
const MAX_PHYS = 16 ** PHYS_HEX - 1;
/** Node ids are UUIDs in production; anything without '.' and control chars keeps the order total. */
const NODE_RE = /^[A-Za-z0-9_:-]{1,128}$/;

export const ZERO_HLC = "000000000000.00000000.";

export function encodeHlc(t: Hlc): string {
  if (!Number.isSafeInteger(t.physical) || t.physical < 0 || t.physical > MAX_PHYS) throw new ThocError("invalid_argument", `HLC physical time out of range: ${t.physical}`);
  if (!Number.isSafeInteger(t.logical) || t.logical < 0 || t.logical > MAX_LOGICAL) throw new ThocError("invalid_argument", `HLC logical counter out of range: ${t.logical}`);
  if (!NODE_RE.test(t.node)) throw new ThocError("invalid_argument", `HLC node id ${JSON.stringify(t.node)} must be 1-128 letters, digits, '_', ':' or '-'`);
  return `${t.physical.toString(16).padStart(PHYS_HEX, "0")}.${t.logical.toString(16).padStart(LOGICAL_HEX, "0")}.${t.node}`;
}

const HLC_RE = /^([0-9a-f]{12})\.([0-9a-f]{8})\.([A-Za-z0-9_:-]{1,128})$/;

export function decodeHlc(s: string): Hlc {
  const m = HLC_RE.exec(s);
  if (!m) throw new ThocError("invalid_argument", `not an HLC timestamp: ${JSON.stringify(s.slice(0, 80))} (expected <12 hex>.<8 hex>.<node id>)`);
  return { physical: parseInt(m[1]!, 16), logical: parseInt(m[2]!, 16), node: m[3]! };
}

export function isHlc(s: string): boolean {
  return HLC_RE.test(s);
}

/** Total order of encoded timestamps (plain string order, spelled out for readers). */
export function compareHlc(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The smallest timestamp after `v` minted for `node` (same physical time,
 * next logical tick). For writes that must order just after a known version
 * and before anything written since (an HLC past v's time is always larger).
 */
export function successorHlc(v: string, node: string): string {
  const t = decodeHlc(v);
  return t.logical < MAX_LOGICAL ? encodeHlc({ physical: t.physical, logical: t.logical + 1, node }) : encodeHlc({ physical: t.physical + 1, logical: 0, node });
}

export function maxHlc(a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return a >= b ? a : b;
}

export interface HlcClockOptions {
  clock?: WallClock;
  /**
   * A received timestamp more than this far ahead of our wall clock is refused:
   * one node with a wrong clock must not drag every version into the future.
   */
  maxDriftMs?: number;
}

export class HlcClock {
  private physical = 0;
  private logical = 0;
  private readonly clock: WallClock;
  private readonly maxDriftMs: number;

  constructor(readonly node: string, opts: HlcClockOptions = {}) {
    encodeHlc({ physical: 0, logical: 0, node }); // validates the node id
    this.clock = opts.clock ?? realClock;
    this.maxDriftMs = opts.maxDriftMs ?? 60_000;
  }

  /** A new timestamp for a local event (a write this node coordinates). */
  now(): string {
    const wall = this.clock.now();
    if (wall > this.physical) {
      this.physical = wall;
      this.logical = 0;
    } else {
      this.bump();
    }
    return encodeHlc({ physical: this.physical, logical: this.logical, node: this.node });
  }

  /** Merges a timestamp received from another node; returns a timestamp after both. */
  update(remote: string): string {
    const r = decodeHlc(remote);
    const wall = this.clock.now();
    if (r.physical - wall > this.maxDriftMs) {
      throw new ThocError("failed_precondition",
        `HLC timestamp from node ${r.node} is ${r.physical - wall} ms ahead of this node's clock (limit ${this.maxDriftMs} ms): fix NTP on the nodes`,
        { node: r.node, driftMs: r.physical - wall });
    }
    const phys = Math.max(wall, this.physical, r.physical);
    if (phys === this.physical && phys === r.physical) this.logical = Math.max(this.logical, r.logical) + 1;
    else if (phys === this.physical) this.logical += 1;
    else if (phys === r.physical) this.logical = r.logical + 1;
    else this.logical = 0;
    this.physical = phys;
    if (this.logical > MAX_LOGICAL) this.overflow();
    return encodeHlc({ physical: this.physical, logical: this.logical, node: this.node });
  }

  /** The last timestamp issued (without issuing a new one). */
  peek(): string {
    return encodeHlc({ physical: this.physical, logical: this.logical, node: this.node });
  }

  private bump(): void {
    this.logical += 1;
    if (this.logical > MAX_LOGICAL) this.overflow();
  }

  /** 2^32 events in one millisecond never happen; borrowing a millisecond keeps the order anyway. */
  private overflow(): void {
    this.physical += 1;
    this.logical = 0;
  }
}
