/**
 * Health checks: an HTTP GET of the container's health path on its first
 * mapped TCP host port, every interval. `retries` failures in a row make it
 * unhealthy; one success makes it healthy again. Each watch reports only
 * changes; a probe never overlaps the next (the timer is set when it ends).
 */
import http from "node:http";
import type { Clock, Timer } from "../core/index.js";

/** Resolves "" when healthy, else why not; never rejects. */
export type HealthProbe = (url: string, timeoutMs: number) => Promise<string>;

export const httpProbe: HealthProbe = (url, timeoutMs) => new Promise((resolve) => {
  const req = http.get(url, { timeout: timeoutMs, agent: false }, (res) => {
    res.resume();
    const s = res.statusCode ?? 0;
    resolve(s >= 200 && s < 400 ? "" : `GET ${url} answered ${s}`);
  });
  req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
  req.on("error", (err) => resolve(`GET ${url}: ${err.message}`));
});

export interface HealthTarget { url: string; intervalMs: number; retries: number }
export type HealthReport = (healthy: boolean, why: string) => void;

interface Watch { target: HealthTarget; report: HealthReport; timer?: Timer; failures: number; state?: boolean; live: boolean }

export class HealthPoller {
  private readonly watches = new Map<string, Watch>();

  constructor(private readonly clock: Clock, private readonly probe: HealthProbe = httpProbe) {}

  /** Starts (or replaces) the checks of key; the first runs after one interval. */
  watch(key: string, target: HealthTarget, report: HealthReport): void {
    this.unwatch(key);
    const w: Watch = { target, report, failures: 0, live: true };
    this.watches.set(key, w);
    this.schedule(w);
  }

  unwatch(key: string): void {
    const w = this.watches.get(key);
    if (!w) return;
    w.live = false;
    w.timer?.cancel();
    this.watches.delete(key);
  }

  /** Whether key is watched (at url, when given). */
  watching(key: string, url?: string): boolean {
    const w = this.watches.get(key);
    return Boolean(w && (url === undefined || w.target.url === url));
  }

  stop(): void { for (const k of [...this.watches.keys()]) this.unwatch(k); }

  private schedule(w: Watch): void {
    w.timer = this.clock.after(w.target.intervalMs, () => { void this.check(w); });
  }

  private async check(w: Watch): Promise<void> {
    const why = await this.probe(w.target.url, Math.min(w.target.intervalMs, 5000));
    if (!w.live) return;
    if (!why) {
      w.failures = 0;
      if (w.state !== true) { w.state = true; w.report(true, ""); }
    } else if (++w.failures >= w.target.retries && w.state !== false) {
      w.state = false;
      w.report(false, `${why} (${w.failures} checks in a row)`);
    }
    if (w.live) this.schedule(w);
  }
}
