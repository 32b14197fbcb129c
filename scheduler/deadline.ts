/**
 * A deadline that mostly moves later (every heartbeat pushes a follower's
 * election deadline out): moving it later touches no timer — the pending
 * one fires at its old time and re-arms for what is left — so an idle
 * follower sets one timer per deadline period, not one per heartbeat.
 * Moving it earlier re-arms at once.
 */
import type { Clock, Timer } from "../core/index.js";

export class MovingDeadline {
  private timer: Timer | undefined;
  private timerAt = 0;
  private due = 0;

  /** `fire` runs once the clock has reached the deadline as it stands then; `live` false drops a firing. */
  constructor(private readonly clock: Clock, private readonly fire: () => void, private readonly live: () => boolean = () => true) {}

  get at(): number { return this.due; }

  set(due: number): void {
    this.due = due;
    this.arm(due);
  }

  cancel(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  private arm(due: number): void {
    if (this.timer && this.timerAt <= due) return;
    this.timer?.cancel();
    this.timerAt = due;
    this.timer = this.clock.after(Math.max(0, due - this.clock.now()), () => {
      this.timer = undefined;
      if (!this.live()) return;
      if (this.clock.now() < this.due) { this.arm(this.due); return; }
      this.fire();
    });
  }
}
