/**
 * The leader's heartbeats to one peer over one long-lived bidi stream
 * (SchedulerService.HeartbeatStream): replies come back one per request, in
 * order, so each send is answered by the next reply. An idle 5-node cluster
 * with a 400 ms heartbeat made 10 unary calls a second from the leader, each
 * an HTTP/2 stream with metadata, a peer-auth MAC on both sides and a
 * deadline timer; on an open stream a beat is one small message each way.
 *
 * A stream that stops answering (a partition leaves TCP open and silent) is
 * given up when its oldest unanswered beat is older than `staleMs`: its beats
 * fail (the election counts them as unanswered, as a timed-out call) and the
 * next beat opens a new stream.
 */
import { ThocError } from "../errors/index.js";

/** Opens the stream: requests in, replies out; the signal cancels it. */
export type BeatOpener<Req, Rep> = (reqs: AsyncIterable<Req>, signal: AbortSignal) => AsyncIterable<Rep>;

interface Pending<Rep> { at: number; resolve(r: Rep): void; reject(e: unknown): void }

interface Open<Req, Rep> {
  pending: Pending<Rep>[];
  ac: AbortController;
  push(r: Req): void;
  end(): void;
}

export class BeatStream<Req, Rep> {
  private cur: Open<Req, Rep> | undefined;
  private closed = false;

  constructor(private readonly open: BeatOpener<Req, Rep>, private readonly staleMs: number, private readonly now: () => number = Date.now) {}

  send(req: Req): Promise<Rep> {
    if (this.closed) return Promise.reject(new ThocError("cancelled", "heartbeat stream closed"));
    let s = this.cur;
    const oldest = s?.pending[0];
    if (s && oldest && this.now() - oldest.at > this.staleMs) {
      this.fail(s, new ThocError("deadline_exceeded", `no heartbeat reply within ${this.staleMs} ms: stream reopened`));
      s = undefined;
    }
    s ??= this.start();
    const open = s;
    return new Promise<Rep>((resolve, reject) => {
      open.pending.push({ at: this.now(), resolve, reject });
      open.push(req);
    });
  }

  /** Ends the stream (agent stopping); beats still waiting fail. */
  close(): void {
    this.closed = true;
    if (this.cur) this.fail(this.cur, new ThocError("cancelled", "heartbeat stream closed"));
  }

  private start(): Open<Req, Rep> {
    const queue: Req[] = [];
    let wake: (() => void) | undefined;
    let ended = false;
    const ac = new AbortController();
    async function* requests(): AsyncGenerator<Req> {
      for (;;) {
        while (queue.length) yield queue.shift()!;
        if (ended) return;
        await new Promise<void>((r) => { wake = r; });
        wake = undefined;
      }
    }
    const s: Open<Req, Rep> = {
      pending: [],
      ac,
      push: (r) => { queue.push(r); wake?.(); },
      end: () => { ended = true; wake?.(); },
    };
    this.cur = s;
    void (async () => {
      try {
        for await (const rep of this.open(requests(), ac.signal)) {
          const p = s.pending.shift();
          if (!p) throw new ThocError("internal", "heartbeat stream: a reply with no beat waiting for it");
          p.resolve(rep);
        }
        throw new ThocError("unavailable", "heartbeat stream ended by the peer");
      } catch (err) {
        this.fail(s, err);
      }
    })();
    return s;
  }

  private fail(s: Open<Req, Rep>, err: unknown): void {
    if (this.cur === s) this.cur = undefined;
    s.end();
    s.ac.abort();
    const e = ThocError.from(err);
    for (const p of s.pending.splice(0)) p.reject(e);
  }
}

/**
 * The serving side: every open heartbeat stream on this node, so that a
 * stopping agent can end them before its gRPC drain (which waits for open
 * streams) instead of holding the drain until its deadline.
 */
export class ServedBeatStreams {
  private readonly stops = new Set<() => void>();
  private closed = false;

  async *serve<Req, Rep>(reqs: AsyncIterable<Req>, handle: (r: Req) => Promise<Rep>): AsyncGenerator<Rep> {
    if (this.closed) throw new ThocError("unavailable", "this node is stopping");
    let stop!: () => void;
    const stopped = new Promise<IteratorResult<Req>>((r) => { stop = () => r({ done: true, value: undefined }); });
    this.stops.add(stop);
    const it = reqs[Symbol.asyncIterator]();
    try {
      for (;;) {
        const n = await Promise.race([it.next(), stopped]);
        if (n.done) return;
        yield await handle(n.value);
      }
    } finally {
      this.stops.delete(stop);
      // Not awaited: a request iterator waiting for the next message would hold the return until one came.
      void it.return?.(undefined)?.catch(() => undefined);
    }
  }

  /** Ends every open stream and refuses new ones. */
  close(): void {
    this.closed = true;
    for (const s of this.stops) s();
  }
}
