/**
 * Per-key shared/exclusive locks for the short metadata critical sections of
 * the local blob store (read the old record, commit the new one). Bodies are
 * never streamed under a lock. FIFO, so a stream of readers cannot starve a
 * writer.
 */
interface Waiter { excl: boolean; grant: () => void }
interface State { readers: number; writer: boolean; queue: Waiter[] }

export class KeyedLock {
  private readonly states = new Map<string, State>();

  async acquire(key: string, excl: boolean): Promise<() => void> {
    let s = this.states.get(key);
    if (!s) {
      s = { readers: 0, writer: false, queue: [] };
      this.states.set(key, s);
    }
    const st = s;
    if (st.queue.length === 0 && !st.writer && (!excl || st.readers === 0)) {
      if (excl) st.writer = true; else st.readers++;
    } else {
      await new Promise<void>((grant) => st.queue.push({ excl, grant }));
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (excl) st.writer = false; else st.readers--;
      this.drain(key, st);
    };
  }

  async with<T>(key: string, excl: boolean, fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire(key, excl);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  private drain(key: string, st: State): void {
    while (st.queue.length > 0) {
      const next = st.queue[0]!;
      if (st.writer || (next.excl && st.readers > 0)) break;
      st.queue.shift();
      if (next.excl) st.writer = true; else st.readers++;
      next.grant();
      if (next.excl) break;
    }
    if (!st.writer && st.readers === 0 && st.queue.length === 0) this.states.delete(key);
  }
}
