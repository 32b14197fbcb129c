/**
 * The request body off the socket, with the idle timeout that tells a silent
 * client (RequestTimeout) from a slow consumer, byte counting, and
 * backpressure on the socket.
 */
import type { IncomingMessage } from "node:http";
import { s3err } from "./errors.js";

/** Bytes queued from the socket before it is paused, and the level at which it is resumed. */
const QUEUE_HIGH = 1 << 20;
const QUEUE_LOW = 256 << 10;

/** Per-chunk and end-of-body checks of a body, run as the consumer takes it (so a bad body throws before the store commits). */
export interface BodyCheck { chunk(c: Uint8Array): void; end(): void }

/**
 * Raw bytes off the socket, as an async iterator driven by 'data' events: no
 * async generator, timer or Promise.race per chunk (each ~64 KiB socket read
 * otherwise cost several promise hops, a measurable share of a PUT's CPU).
 * Up to QUEUE_HIGH bytes are queued before the request is paused.
 * RequestTimeout when the client sends nothing for idleMs while we wait for
 * it (a slow consumer does not count), or, with a minimum rate, when over a
 * window of idleMs spent mostly waiting for it the client sent fewer than
 * minRate bytes a second (a byte every few seconds never trips the idle
 * timer, yet holds the request and its buffers forever); IncompleteBody when
 * it goes away.
 */
export class SocketBody implements AsyncIterableIterator<Buffer> {
  private readonly queue: Buffer[] = [];
  private head = 0;
  private queued = 0;
  private paused = false;
  private ended = false;
  private finished = false;
  private error?: unknown;
  private waiter?: { resolve: (r: IteratorResult<Buffer>) => void; reject: (e: unknown) => void };
  private timer?: NodeJS.Timeout;
  private rateTimer?: NodeJS.Timeout;
  /** Bytes received and ms spent waiting for the client (nothing queued, consumer waiting) in this rate window. */
  private windowBytes = 0;
  private waitedMs = 0;
  private waitingSince?: number;

  constructor(private readonly req: IncomingMessage, private readonly idleMs: number, private readonly count: (n: number) => void, private readonly check?: BodyCheck,
    private readonly minRate = 0) {}

  [Symbol.asyncIterator](): this {
    return this;
  }

  private start(): void {
    this.timer = setTimeout(this.onIdle, this.idleMs);
    if (this.minRate > 0) this.rateTimer = setInterval(this.onRateWindow, this.idleMs);
    this.req.on("data", this.onData);
    this.req.on("end", this.onEnd);
    this.req.on("error", this.onError);
    this.req.on("close", this.onClose);
  }

  private readonly onData = (c: Buffer): void => {
    this.count(c.length);
    this.windowBytes += c.length;
    if (this.waitingSince !== undefined) {
      this.waitedMs += Date.now() - this.waitingSince;
      this.waitingSince = undefined;
    }
    this.timer?.refresh();
    this.queue.push(c);
    this.queued += c.length;
    if (this.queued >= QUEUE_HIGH && !this.paused) {
      this.paused = true;
      this.req.pause();
    }
    this.settle();
  };

  private readonly onEnd = (): void => {
    this.ended = true;
    clearTimeout(this.timer);
    this.settle();
  };

  private readonly onError = (err: Error & { code?: string }): void => {
    this.error ??= err.code === "ECONNRESET" || err.message === "aborted" ? s3err("IncompleteBody") : err;
    this.settle();
  };

  private readonly onClose = (): void => {
    if (!this.ended) this.error ??= s3err("IncompleteBody");
    this.settle();
  };

  private readonly onIdle = (): void => {
    if (this.ended || this.finished) return;
    // Bytes still queued, a paused socket, or nobody waiting for the next chunk (the
    // store is busy with the last one, e.g. replicas pacing a replicated PUT): the
    // consumer is the slow one, not the client.
    if (this.queued > 0 || this.paused || !this.waiter) {
      this.timer!.refresh();
      return;
    }
    this.error ??= s3err("RequestTimeout");
    this.settle();
  };

  private readonly onRateWindow = (): void => {
    const now = Date.now();
    let waited = this.waitedMs;
    if (this.waitingSince !== undefined) {
      waited += now - this.waitingSince;
      this.waitingSince = now;
    }
    const bytes = this.windowBytes;
    this.windowBytes = 0;
    this.waitedMs = 0;
    // Judged only when we mostly waited for the client this window: a slow consumer is not the client's fault.
    if (this.ended || this.finished || waited < this.idleMs / 2 || bytes >= (this.minRate * waited) / 1000) return;
    this.error ??= s3err("RequestTimeout", `Your socket connection to the server sent less than ${this.minRate} bytes a second of the request body (s3.minBodyRate).`);
    this.settle();
  };

  private settle(): void {
    const w = this.waiter;
    if (!w) return;
    this.waiter = undefined;
    this.next().then(w.resolve, w.reject);
  }

  next(): Promise<IteratorResult<Buffer>> {
    if (this.finished) return Promise.resolve({ done: true, value: undefined });
    if (!this.timer) this.start();
    if (this.head < this.queue.length) {
      const c = this.queue[this.head]!;
      this.queue[this.head++] = EMPTY;
      if (this.head === this.queue.length) {
        this.queue.length = 0;
        this.head = 0;
      }
      this.queued -= c.length;
      if (this.paused && this.queued <= QUEUE_LOW) {
        this.paused = false;
        this.req.resume();
      }
      try {
        this.check?.chunk(c);
      } catch (err) {
        this.stop();
        return Promise.reject(err);
      }
      return Promise.resolve({ done: false, value: c });
    }
    if (this.error !== undefined) {
      this.stop();
      return Promise.reject(this.error);
    }
    if (this.ended) {
      this.stop();
      try {
        this.check?.end();
      } catch (err) {
        return Promise.reject(err);
      }
      return Promise.resolve({ done: true, value: undefined });
    }
    // The client's idle time counts from when we start waiting for it.
    if (!this.waiter) this.timer?.refresh();
    this.waitingSince ??= Date.now();
    return new Promise((resolve, reject) => { this.waiter = { resolve, reject }; });
  }

  /** The consumer stopped early: what the client still sends is read and dropped. */
  return(): Promise<IteratorResult<Buffer>> {
    this.stop();
    return Promise.resolve({ done: true, value: undefined });
  }

  private stop(): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.timer);
    clearInterval(this.rateTimer);
    this.req.off("data", this.onData);
    this.req.off("end", this.onEnd);
    this.req.off("error", this.onError);
    this.req.off("close", this.onClose);
    this.queue.length = 0;
    this.queued = 0;
    if (!this.ended) this.req.resume();
  }
}

const EMPTY = Buffer.alloc(0);
