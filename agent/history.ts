/**
 * One node's ordered event history: every event this node emits (audit
 * records, VM and node changes, leader changes) gets this node's id, its
 * epoch (the store's generation: it counts agent starts and is persisted, so
 * it only grows) and the next sequence number of that epoch, and the last
 * `keep` of them stay in memory for replay.
 *
 * A cursor is where a client is in each node's history: base64url of
 * {"<nodeId>": "<epoch>.<seq>"}. Replaying after a cursor gives every later
 * event of that node; when the history no longer holds the next one (dropped
 * from the ring, or the node restarted and lost its memory) a "missed" event
 * comes first and says how many, when that is known.
 */
import { create } from "@bufbuild/protobuf";
import { ThocError } from "../errors/index.js";
import { EVENT_KINDS, type EventKind } from "../core/index.js";
import { EventSchema, type Event, type WatchEventsRequest } from "../proto/index.js";

export interface Position { epoch: bigint; seq: bigint }
export type CursorMap = Map<string, Position>;

export function encodeCursor(pos: CursorMap): string {
  const o: Record<string, string> = {};
  for (const [id, p] of [...pos].sort(([a], [b]) => a.localeCompare(b))) o[id] = `${p.epoch}.${p.seq}`;
  return Buffer.from(JSON.stringify(o)).toString("base64url");
}

const bad = (why: string) => new ThocError("invalid_argument", `cursor: ${why}; pass a cursor exactly as an event carried it, or none to start from the tail`, { field: "cursor" });

export function decodeCursor(cursor: string): CursorMap {
  const out: CursorMap = new Map();
  if (!cursor) return out;
  if (cursor.length > 64 << 10 || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw bad("not base64url");
  let o: unknown;
  try { o = JSON.parse(Buffer.from(cursor, "base64url").toString()); } catch { throw bad("not a cursor"); }
  if (typeof o !== "object" || o === null || Array.isArray(o)) throw bad("not a cursor");
  for (const [id, v] of Object.entries(o)) {
    const m = typeof v === "string" ? /^(\d{1,18})\.(\d{1,18})$/.exec(v) : null;
    if (!m || !id) throw bad(`bad position for node ${JSON.stringify(id.slice(0, 64))}`);
    out.set(id, { epoch: BigInt(m[1]!), seq: BigInt(m[2]!) });
  }
  return out;
}

/** Whether a is at or before b in one node's history (a later epoch is later whatever its seq). */
export function atOrBefore(a: Position, b: Position): boolean {
  return a.epoch < b.epoch || (a.epoch === b.epoch && a.seq <= b.seq);
}

export interface EventFilter { kinds: ReadonlySet<string>; vm: string; node: string }

export function filterOf(req: Pick<WatchEventsRequest, "kinds" | "vm" | "node">): EventFilter {
  const kinds = new Set(req.kinds.flatMap((k) => k.split(",")).map((k) => k.trim()).filter(Boolean));
  for (const k of kinds) {
    if (!EVENT_KINDS.includes(k as EventKind)) throw new ThocError("invalid_argument", `kinds: unknown kind ${JSON.stringify(k.slice(0, 32))}; use ${EVENT_KINDS.join(", ")}`, { field: "kinds" });
  }
  return { kinds, vm: req.vm, node: req.node };
}

const VM_METHOD = /^\/thoc\.node\.v1\.(VmService|ContainerService)\//;

export function matches(e: Event, f: EventFilter): boolean {
  if (e.kind === "missed") return true;
  if (f.kinds.size && !f.kinds.has(e.kind)) return false;
  if (f.vm) {
    const aboutVm = e.kind === "vm" ? e.vm?.name === f.vm
      : e.kind === "container" ? e.container?.name === f.vm
      : e.kind === "audit" && VM_METHOD.test(e.method) && Object.entries(e.target).some(([k, v]) => v === f.vm && (k === "name" || k === "vm" || k.endsWith(".name")));
    if (!aboutVm) return false;
  }
  if (f.node) {
    const n = f.node;
    if (e.node !== n && e.nodeId !== n && !(e.kind === "node" && (e.member?.name === n || e.member?.id === n))) return false;
  }
  return true;
}

/** An event as published, before the history numbers it. */
export type EventBody = Omit<Partial<Event>, "$typeName" | "epoch" | "seq" | "nodeId" | "cursor"> & { kind: EventKind };

const MAX_QUEUE = 10_000;

export class NodeHistory {
  private readonly ring: Event[] = [];
  private seq = 0n;
  private readonly subs = new Set<(e: Event) => void>();
  private readonly closers = new Set<() => void>();
  closed = false;

  constructor(
    readonly nodeId: string,
    readonly nodeName: string,
    readonly epoch: bigint,
    private readonly keep = 1000,
    private readonly now: () => number = Date.now,
  ) {}

  private cursorAt(seq: bigint): string {
    return encodeCursor(new Map([[this.nodeId, { epoch: this.epoch, seq }]]));
  }

  append(body: EventBody): Event {
    this.seq += 1n;
    const e = create(EventSchema, {
      timeMs: BigInt(this.now()), node: this.nodeName, ...body,
      nodeId: this.nodeId, epoch: this.epoch, seq: this.seq, cursor: this.cursorAt(this.seq),
    });
    this.ring.push(e);
    if (this.ring.length > this.keep) this.ring.shift();
    for (const s of this.subs) s(e);
    return e;
  }

  /** Ends every follower (agent stop: a followed stream must not hold the gRPC drain open). */
  close(): void {
    this.closed = true;
    for (const c of this.closers) c();
  }

  private missed(count: bigint, reason: string, at: bigint): Event {
    return create(EventSchema, {
      timeMs: BigInt(this.now()), node: this.nodeName, kind: "missed", nodeId: this.nodeId, epoch: this.epoch, seq: at,
      cursor: this.cursorAt(at), missed: { count, reason },
    });
  }

  /**
   * What to send first: after `after` (every later event, a missed marker
   * first when the history cannot say them all), or else the last `tail`
   * matching events.
   */
  replay(f: EventFilter, tail: number, after?: Position): Event[] {
    if (!after) return this.ring.filter((e) => matches(e, f)).slice(-tail);
    const first = this.ring[0]?.seq ?? this.seq + 1n;
    const out: Event[] = [];
    if (after.epoch === this.epoch) {
      if (first > after.seq + 1n) out.push(this.missed(first - after.seq - 1n, `the history of ${this.nodeName} keeps only the last ${this.keep} events`, first - 1n));
    } else {
      const why = after.epoch < this.epoch
        ? `${this.nodeName} restarted since the cursor (generation ${after.epoch} -> ${this.epoch}): events after #${after.seq} of generation ${after.epoch} are lost`
        : `the cursor names generation ${after.epoch} of ${this.nodeName}, which is at generation ${this.epoch} (its data directory was recreated?)`;
      out.push(this.missed(0n, first > 1n ? `${why}, and ${first - 1n} of generation ${this.epoch} were dropped` : why, first - 1n));
    }
    for (const e of this.ring) if (e.seq > (after.epoch === this.epoch ? after.seq : 0n) && matches(e, f)) out.push(e);
    return out;
  }

  /** The replay and, atomically with it, a subscription to every later matching event. */
  follow(f: EventFilter, tail: number, after: Position | undefined, fn: (e: Event) => void, onClose: () => void): { past: Event[]; stop(): void } {
    const sub = (e: Event) => { if (matches(e, f)) fn(e); };
    this.subs.add(sub);
    this.closers.add(onClose);
    return { past: this.replay(f, tail, after), stop: () => { this.subs.delete(sub); this.closers.delete(onClose); } };
  }

  /** This node's events for a request (its own position in the cursor), then with follow every new one. */
  async *stream(req: WatchEventsRequest, signal: AbortSignal): AsyncIterable<Event> {
    const f = filterOf(req);
    const tail = req.tail || 100;
    const after = decodeCursor(req.cursor).get(this.nodeId);
    if (!req.follow) {
      yield* this.replay(f, tail, after);
      return;
    }
    const queue: Event[] = [];
    let wake: (() => void) | undefined;
    const sub = this.follow(f, tail, after, (e) => { queue.push(e); wake?.(); }, () => wake?.());
    const onAbort = () => wake?.();
    signal.addEventListener("abort", onAbort);
    try {
      yield* sub.past;
      while (!signal.aborted && !this.closed) {
        // A client that does not read must not grow the agent's memory without bound.
        if (queue.length > MAX_QUEUE) throw new ThocError("resource_exhausted", "event stream: the client reads too slowly; reconnect with the last cursor");
        const e = queue.shift();
        if (e) { yield e; continue; }
        await new Promise<void>((res) => { wake = res; });
        wake = undefined;
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      sub.stop();
    }
  }
}
