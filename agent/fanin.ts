/**
 * WatchEvents across the cluster: one stream per live member (this node's
 * own history, and EventPeerService.WatchNodeEvents on every other member),
 * merged into one. Each source stays in its own order; sources interleave by
 * arrival (without follow: merged by time). Every event goes out with the
 * composite cursor (this node's view of where the client is in every
 * source), so a client that reconnects, to this node or another, resumes
 * with no gaps and no duplicates: a source's stream that breaks is reopened
 * from the last position it delivered, and anything at or before a position
 * already sent is dropped.
 *
 * A member that is down (dead, left) is skipped; when it comes back, its
 * stream resumes from the cursor (a "missed" event first when it restarted
 * and lost what it held).
 */
import { create } from "@bufbuild/protobuf";
import { ThocError } from "../errors/index.js";
import { WatchEventsRequestSchema, type Event, type WatchEventsRequest } from "../proto/index.js";
import { atOrBefore, decodeCursor, encodeCursor, filterOf, type CursorMap } from "./history.js";

export type EventSource = (req: WatchEventsRequest, signal: AbortSignal) => AsyncIterable<Event>;

export interface FanInDeps {
  self: string;
  /** This node's own history. */
  local: EventSource;
  /** A member's history over the peer protocol. */
  peer(nodeId: string): EventSource;
  /** Ids of the other members that count as up (alive or suspect). */
  members(): string[];
  /** Calls fn on every membership change; returns the unsubscribe. */
  onMembers(fn: () => void): () => void;
  /** A broken stream of an up member is reopened after this (doubling up to 10x). */
  retryMs?: number;
  onError?(nodeId: string, err: unknown): void;
}

const MAX_QUEUE = 10_000;

export async function* fanIn(d: FanInDeps, req: WatchEventsRequest, signal: AbortSignal): AsyncIterable<Event> {
  filterOf(req); // refuse bad filters before any stream opens
  const pos: CursorMap = decodeCursor(req.cursor);
  const ac = new AbortController();
  const stopAll = () => ac.abort();
  signal.addEventListener("abort", stopAll, { once: true });
  const queue: { id: string; e: Event }[] = [];
  const byId = new Map<string, Event[]>();
  let wake: (() => void) | undefined;
  let failure: unknown;
  const pumps = new Map<string, AbortController>();
  const retry = d.retryMs ?? 500;

  const requestFor = (id: string) => {
    const p = pos.get(id);
    return create(WatchEventsRequestSchema, { ...req, local: true, cursor: p ? encodeCursor(new Map([[id, p]])) : "" });
  };

  const pump = async (id: string, pac: AbortController) => {
    const src = id === d.self ? d.local : d.peer(id);
    let backoff = retry;
    while (!pac.signal.aborted) {
      try {
        for await (const e of src(requestFor(id), pac.signal)) {
          backoff = retry;
          if (req.follow) queue.push({ id, e }); else (byId.get(id) ?? byId.set(id, []).get(id)!).push(e);
          wake?.();
          if (queue.length > MAX_QUEUE) {
            failure = new ThocError("resource_exhausted", "event stream: the client reads too slowly; reconnect with the last cursor");
            break;
          }
        }
        if (!req.follow || id === d.self || failure) break;
        // A follower's stream ended (the member is stopping): reopen it while the member is up.
      } catch (err) {
        if (pac.signal.aborted) break;
        if (id === d.self) { failure = err; wake?.(); break; }
        d.onError?.(id, err);
        if (!req.follow) break;
      }
      if (id !== d.self && !d.members().includes(id)) break;
      await sleep(backoff, pac.signal);
      backoff = Math.min(backoff * 2, retry * 10);
    }
    if (pumps.get(id) === pac) pumps.delete(id);
    wake?.();
  };

  const start = (id: string) => {
    if (pumps.has(id) || ac.signal.aborted) return;
    const pac = new AbortController();
    ac.signal.addEventListener("abort", () => pac.abort(), { once: true });
    pumps.set(id, pac);
    void pump(id, pac);
  };

  const reconcile = () => {
    const up = new Set(d.members());
    for (const id of up) start(id);
    // A member gone from the view: its stream would hang on a dead host; stop it, resume when it is back.
    for (const [id, pac] of pumps) if (id !== d.self && !up.has(id)) pac.abort();
  };

  start(d.self);
  if (!req.local) for (const id of d.members()) start(id);
  const unsub = req.follow && !req.local ? d.onMembers(reconcile) : () => {};
  const tick = req.follow && !req.local ? setInterval(reconcile, 2000) : undefined;

  /** The event as sent: its source's position moves and the event carries the whole cursor; stale ones are dropped. */
  const advance = (e: Event): Event | undefined => {
    const id = e.nodeId;
    const p = { epoch: e.epoch, seq: e.seq };
    const had = pos.get(id);
    if (had && atOrBefore(p, had)) return undefined;
    pos.set(id, p);
    return { ...e, cursor: encodeCursor(pos) };
  };

  try {
    if (!req.follow) {
      while (pumps.size && !signal.aborted) await new Promise<void>((res) => { wake = res; });
      if (failure) throw failure;
      for (const e of mergeByTime([...byId.values()])) {
        const out = advance(e);
        if (out) yield out;
      }
      return;
    }
    while (!signal.aborted) {
      if (failure) throw failure;
      const next = queue.shift();
      if (next) {
        const out = advance(next.e);
        if (out) yield out;
        continue;
      }
      if (!pumps.has(d.self)) return; // this node is closing its history
      await new Promise<void>((res) => { wake = res; });
      wake = undefined;
    }
  } finally {
    signal.removeEventListener("abort", stopAll);
    clearInterval(tick);
    unsub();
    ac.abort();
  }
}

/** One list, by time, keeping each source's own order (a clock step back must not reorder a node's events). */
export function mergeByTime(lists: Event[][]): Event[] {
  const idx = lists.map(() => 0);
  const out: Event[] = [];
  for (;;) {
    let best = -1;
    for (let i = 0; i < lists.length; i++) {
      const e = lists[i]![idx[i]!];
      if (e && (best < 0 || e.timeMs < lists[best]![idx[best]!]!.timeMs)) best = i;
    }
    if (best < 0) return out;
    out.push(lists[best]![idx[best]!++]!);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((res) => {
    const t = setTimeout(done, ms);
    function done() { clearTimeout(t); signal.removeEventListener("abort", done); res(); }
    signal.addEventListener("abort", done, { once: true });
  });
}
