/**
 * libvirt's default event loop (keepalives, domain events, stream I/O of the
 * remote driver), registered once per process and run on koffi's async path:
 * each virEventRunDefaultImpl call waits on a pool thread for one iteration,
 * then the next is queued. Reference-counted by open connections; the last
 * release wakes the loop with a zero timeout so the process can exit.
 */
import { koffi, type Libvirt } from "./ffi.js";

class EventLoop {
  private refs = 0;
  private running?: Promise<void>;
  private wakeFn?: bigint;
  private wakeTimer = -1;

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
    if (!this.wakeFn) {
      const proto = koffi.proto("void thocVirEventTimeout(int timer, void *opaque)");
      this.wakeFn = koffi.register(() => {}, koffi.pointer(proto));
    }
    if (this.wakeTimer < 0) this.wakeTimer = this.lv.sync<number>("virEventAddTimeout", 0, this.wakeFn, null, null);
  }

  private async run(): Promise<void> {
    try {
      while (this.refs > 0) {
        if (await this.lv.call<number>("virEventRunDefaultImpl") < 0) await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      // Removed here, between iterations, where no libvirt thread holds the loop's lock.
      if (this.wakeTimer >= 0) this.lv.sync("virEventRemoveTimeout", this.wakeTimer);
      this.wakeTimer = -1;
      this.running = undefined;
      if (this.refs > 0) this.running = this.run();
    }
  }
}

let loop: EventLoop | undefined;
export function eventLoop(lv: Libvirt): EventLoop {
  loop ??= new EventLoop(lv);
  return loop;
}
