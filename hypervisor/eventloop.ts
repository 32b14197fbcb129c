/**
 * libvirt's default event loop (keepalives, domain events, stream I/O of the
 * remote driver), registered once per process and run on koffi's async path:
 * each virEventRunDefaultImpl call waits on a pool thread for one iteration,
 * then the next is queued. Reference-counted by open connections; the last
 * release wakes the loop with a zero timeout so the process can exit.
 *
 * While it runs, a 1 s libvirt timer keeps every iteration short: with no
 * timer of its own the poll inside virEventRunDefaultImpl may wait forever,
 * and process.exit() joins the pool thread it blocks, so the agent could
 * never exit (seen after two SIGTERMs).
 */
import { koffi, type Libvirt } from "./ffi.js";

class EventLoop {
  private refs = 0;
  private running?: Promise<void>;
  private wakeFn?: bigint;
  private wakeTimer = -1;
  private tickTimer = -1;

  constructor(private readonly lv: Libvirt) {
    if (lv.sync<number>("virEventRegisterDefaultImpl") < 0) throw lv.error("virEventRegisterDefaultImpl", null);
  }

  retain(): void {
    this.refs++;
    this.running ??= this.run();
  }

  release(): void {
    if (--this.refs > 0) return;
    this.refs = 0;
    if (!this.running) return;
    if (this.wakeTimer < 0) this.wakeTimer = this.lv.sync<number>("virEventAddTimeout", 0, this.noop(), null, null);
  }

  /** Resolves when no iteration is running (after the last release), or after maxMs: exit() then joins no libvirt thread. */
  async idle(maxMs: number): Promise<void> {
    if (this.refs > 0 || !this.running) return;
    let t: NodeJS.Timeout | undefined;
    await Promise.race([this.running, new Promise((r) => { t = setTimeout(r, maxMs); })]).finally(() => clearTimeout(t));
  }

  private noop(): bigint {
    if (!this.wakeFn) {
      const proto = koffi.proto("void thocVirEventTimeout(int timer, void *opaque)");
      this.wakeFn = koffi.register(() => {}, koffi.pointer(proto));
    }
    return this.wakeFn!;
  }

  private async run(): Promise<void> {
    if (this.tickTimer < 0) this.tickTimer = this.lv.sync<number>("virEventAddTimeout", TICK_MS, this.noop(), null, null);
    try {
      while (this.refs > 0) {
        if (await this.lv.call<number>("virEventRunDefaultImpl") < 0) await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      // Removed here, between iterations, where no libvirt thread holds the loop's lock.
      if (this.wakeTimer >= 0) this.lv.sync("virEventRemoveTimeout", this.wakeTimer);
      this.wakeTimer = -1;
      if (this.tickTimer >= 0) this.lv.sync("virEventRemoveTimeout", this.tickTimer);
      this.tickTimer = -1;
      this.running = undefined;
      if (this.refs > 0) this.running = this.run();
    }
  }
}

/** Longest one loop iteration may block: bounds how long exit waits for the loop's thread. */
const TICK_MS = 1000;

let loop: EventLoop | undefined;
export function eventLoop(lv: Libvirt): EventLoop {
  loop ??= new EventLoop(lv);
  return loop;
}
