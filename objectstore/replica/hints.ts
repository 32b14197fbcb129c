/**
 * Hinted handoff: when a preferred replica is down, a stand-in keeps the write
 * as a hint for it (apart from its own replicas) and delivers it when the node
 * is back; a delivered hint is dropped. Hints do not count toward W: the write
 * quorum is always W copies on preferred nodes (see docs/objectstore.md).
 */
import { MemoryReplicaStore, knownWrite, type PutOutcome, type ReplicaRecord, type ReplicaStore, type ReplicaWrite } from "./replica-store.js";
import type { RateLimiter } from "../../cluster/index.js";

export interface HintStore {
  /** The hints kept for one target node (a replica store of its own). */
  for(target: string): ReplicaStore;
  /** Targets with at least one hint (possibly a few empty ones). */
  targets(): Promise<string[]>;
}

export class MemoryHintStore implements HintStore {
  private readonly stores = new Map<string, MemoryReplicaStore>();

  for(target: string): MemoryReplicaStore {
    let s = this.stores.get(target);
    if (!s) this.stores.set(target, (s = new MemoryReplicaStore()));
    return s;
  }

  async targets(): Promise<string[]> {
    return [...this.stores].filter(([, s]) => s.records().length > 0).map(([t]) => t);
  }

  count(target?: string): number {
    if (target !== undefined) return this.stores.get(target)?.records().length ?? 0;
    return [...this.stores.values()].reduce((n, s) => n + s.records().length, 0);
  }
}

export interface HandoffOptions {
  hints: HintStore;
  /** A replica target for the hinted node (throws unavailable when it has no address). */
  target: (nodeId: string) => { put(w: ReplicaWrite): Promise<PutOutcome>; delete(bucket: string, key: string, version: string): Promise<PutOutcome> };
  /** Skip nodes the membership view says are down (no point trying). */
  isUp?: (nodeId: string) => boolean;
  limiter?: RateLimiter;
  log?: { info(o: object, m: string): void; warn(o: object, m: string): void };
}

/**
 * Delivers every hint to its node; a delivered hint is dropped (only if it was
 * not replaced meanwhile). Stops at a node's first failure (it is still down)
 * and keeps the rest for the next round. Returns how many were delivered.
 */
export async function deliverHints(o: HandoffOptions): Promise<{ delivered: number; pending: number }> {
  let delivered = 0;
  let pending = 0;
  for (const node of await o.hints.targets()) {
    if (o.isUp && !o.isUp(node)) { pending++; continue; }
    const store = o.hints.for(node);
    const all: ReplicaRecord[] = [];
    for await (const r of store.list({ start: 0, end: 0, whole: true })) all.push(r);
    for (const rec of all) {
      try {
        const t = o.target(node);
        if (rec.tombstone) await t.delete(rec.bucket, rec.key, rec.version);
        else {
          const got = await store.get(rec.bucket, rec.key);
          if (!got || got.record.version !== rec.version) continue;
          await t.put(knownWrite(rec, o.limiter ? o.limiter.pace(got.body) : got.body));
        }
        await store.drop(rec.bucket, rec.key, rec.version);
        delivered++;
      } catch (err) {
        pending += all.length - all.indexOf(rec);
        o.log?.warn({ node, err: (err as Error).message }, "object store: hinted handoff paused: node unreachable");
        break;
      }
    }
  }
  if (delivered) o.log?.info({ delivered, pending }, "object store: hints delivered");
  return { delivered, pending };
}
