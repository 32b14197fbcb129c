/**
 * The term as a fencing token (SPEC 4): every placement command carries the
 * term of the leader that issued it, and a node refuses a term lower than the
 * highest it has seen. A leader deposed while a command was in flight (a GC
 * pause, a partition) can therefore never act after its successor has.
 *
 * The highest term is durable before accept() resolves: a node that forgot it
 * across a restart would take the old leader's commands again.
 */
import { ThocError } from "../errors/index.js";
import { MAX_TERM_JUMP } from "./voters.js";

export interface FenceStore {
  load(): Promise<number | undefined>;
  /** Durable (fsync) before it resolves. */
  save(highest: number): Promise<void>;
}

export class MemoryFenceStore implements FenceStore {
  saves = 0;
  constructor(public highest?: number) {}
  async load(): Promise<number | undefined> { return this.highest; }
  async save(highest: number): Promise<void> { this.highest = highest; this.saves++; }
}

export class Fence {
  private highest = 0;
  private loaded: Promise<void> | undefined;
  /** One change at a time, so two concurrent commands cannot both pass against the same old value. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly store: FenceStore) {}

  /** A Fence with its highest term already read from the store. */
  static async open(store: FenceStore): Promise<Fence> {
    const f = new Fence(store);
    await f.ready();
    return f;
  }

  /** The highest term seen (0 before open()/the first call has read the store). */
  get highestTerm(): number { return this.highest; }

  /**
   * Lets a command of term through, or refuses it because a later leader
   * exists. Raises (and persists) the highest term seen.
   */
  accept(term: number, what: string): Promise<void> {
    return this.serial(async () => {
      this.check(term, "command term");
      if (term < this.highest) {
        throw new ThocError("aborted",
          `stale leader term ${term}: this node has seen term ${this.highest}; the command (${what}) came from a deposed leader, resend it to the current leader`,
          { term, highest: this.highest });
      }
      await this.raise(term);
    });
  }

  /** Records a term seen elsewhere (votes, heartbeats): commands from before it are stale from now on. */
  observe(term: number): Promise<void> {
    return this.serial(async () => {
      this.check(term, "observed term");
      await this.raise(term);
    });
  }

  private async raise(term: number): Promise<void> {
    if (term <= this.highest) return;
    await this.store.save(term);
    this.highest = term;
  }

  private check(term: number, what: string): void {
    if (typeof term !== "number" || !Number.isSafeInteger(term) || term < 0) {
      throw new ThocError("invalid_argument", `${what} must be a non-negative safe integer, got ${String(term)}`, { term: String(term) });
    }
    if (term > this.highest + MAX_TERM_JUMP) {
      throw new ThocError("invalid_argument", `${what} ${term} is more than ${MAX_TERM_JUMP} ahead of the highest term seen (${this.highest}): refusing a corrupted or forged term`, { term, highest: this.highest });
    }
  }

  private ready(): Promise<void> {
    this.loaded ??= this.store.load().then((h) => {
      if (h !== undefined) {
        if (!Number.isSafeInteger(h) || h < 0) throw new ThocError("data_loss", `the fence store holds an invalid highest term ${String(h)}: repair or remove it`);
        this.highest = h;
      }
    });
    return this.loaded;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(() => this.ready()).then(fn);
    this.queue = p.catch(() => undefined);
    return p;
  }
}
