/**
 * Fans one body stream out to several replica streams with bounded memory:
 * the source is read only when every attached branch is within `highWater`
 * chunks of the newest one, so the slowest replica paces the write. A branch
 * whose replica failed detaches and stops holding the others back. The digest
 * of the whole body is computed once, for every replica's trailer.
 */
import { createHash, type Hash } from "node:crypto";
import { ThocError } from "../../errors/index.js";

export interface Branch extends AsyncIterable<Uint8Array> {
  detach(): void;
}

export class Tee {
  private readonly chunks = new Map<number, Uint8Array>();
  private head = 0;
  private done = false;
  private error: unknown;
  private reading = false;
  private readonly cursors = new Map<number, number>();
  private nextId = 0;
  private wake: (() => void)[] = [];
  private readonly hash?: Hash;
  private size = 0;
  private digest?: string;
  private readonly it: AsyncIterator<Uint8Array>;

  /** sha256: the body's digest from whoever already hashes it, asked once the source has ended. */
  constructor(source: AsyncIterable<Uint8Array>, private readonly highWater = 4, private readonly sha256?: () => string) {
    this.it = source[Symbol.asyncIterator]();
    if (!sha256) this.hash = createHash("sha256");
  }

  /** Size and sha256 of the whole body; only once the source has ended. */
  expected(): { size: number; sha256: string } {
    if (!this.done || this.digest === undefined) throw new ThocError("data_loss", "the body did not arrive whole; nothing stored");
    return { size: this.size, sha256: this.digest };
  }

  /** What the source threw, if it failed. */
  get sourceError(): unknown {
    return this.error;
  }

  get finished(): boolean {
    return this.done && this.error === undefined;
  }

  /** Creates a branch; create them all before any is read. */
  branch(): Branch {
    const id = this.nextId++;
    this.cursors.set(id, 0);
    const self = this;
    return {
      detach: () => { self.cursors.delete(id); self.gc(); self.notify(); },
      [Symbol.asyncIterator]() {
        return {
          next: () => self.next(id),
          return: async () => { self.cursors.delete(id); self.gc(); self.notify(); return { done: true, value: undefined }; },
        };
      },
    };
  }

  private notify(): void {
    const w = this.wake;
    this.wake = [];
    for (const f of w) f();
  }

  private minCursor(): number {
    let m = this.head;
    for (const c of this.cursors.values()) m = Math.min(m, c);
    return m;
  }

  private gc(): void {
    const m = this.minCursor();
    for (const k of this.chunks.keys()) if (k < m) this.chunks.delete(k);
  }

  private async next(id: number): Promise<IteratorResult<Uint8Array>> {
    for (;;) {
      const cur = this.cursors.get(id);
      if (cur === undefined) return { done: true, value: undefined };
      if (cur < this.head) {
        const chunk = this.chunks.get(cur)!;
        this.cursors.set(id, cur + 1);
        this.gc();
        this.notify();
        return { done: false, value: chunk };
      }
      if (this.error !== undefined) throw this.error;
      if (this.done) return { done: true, value: undefined };
      if (!this.reading && this.head - this.minCursor() < this.highWater) {
        this.reading = true;
        try {
          const r = await this.it.next();
          if (r.done) {
            this.done = true;
            this.digest = this.hash ? this.hash.digest("hex") : this.sha256!();
          } else {
            this.hash?.update(r.value);
            this.size += r.value.byteLength;
            this.chunks.set(this.head++, r.value);
          }
        } catch (err) {
          this.error = err;
          this.done = true;
        } finally {
          this.reading = false;
          this.notify();
        }
        continue;
      }
      await new Promise<void>((r) => this.wake.push(r));
    }
  }
}
