/**
 * Updates waiting to be piggybacked: one per member (a newer update about a
 * member replaces the older one), least-transmitted first, each dropped after
 * retransmitMult * ceil(log10(n + 1)) transmissions.
 */
import type { Msg } from "./messages.js";

interface Item { key: string; msg: Msg; json: string; sent: number; order: number }

export class BroadcastQueue {
  private readonly items = new Map<string, Item>();
  private order = 0;

  constructor(private readonly limit: () => number) {}

  get size(): number { return this.items.size; }

  queue(key: string, msg: Msg): void {
    this.items.set(key, { key, msg, json: JSON.stringify(msg), sent: 0, order: this.order++ });
  }

  has(key: string): boolean { return this.items.has(key); }

  /** Takes the updates that fit in `bytes` of JSON (each costs its length + 1 for the comma). */
  take(bytes: number): string[] {
    if (this.items.size === 0 || bytes <= 0) return [];
    const all = [...this.items.values()].sort((a, b) => a.sent - b.sent || b.order - a.order);
    const out: string[] = [];
    const lim = this.limit();
    for (const it of all) {
      if (it.json.length + 1 > bytes) continue;
      bytes -= it.json.length + 1;
      out.push(it.json);
      if (++it.sent >= lim) this.items.delete(it.key);
    }
    return out;
  }
}
