/**
 * One gossip node: SWIM (swim.ts) plus push-pull and join (sync.ts) behind
 * the Membership face the rest of the agent uses.
 */
import { ThocError } from "../errors/index.js";
import { Prober } from "./probe.js";
import { Swim, snapshot, type SwimOptions, type SwimStats } from "./swim.js";
import { Sync } from "./sync.js";
import type { Member, MemberEvent, Membership, NodeMeta } from "./types.js";

export function metaSize(meta: NodeMeta): number {
  return Buffer.byteLength(JSON.stringify(meta));
}

export function checkMeta(meta: NodeMeta, max: number): void {
  const n = metaSize(meta);
  if (n > max) {
    throw new ThocError("invalid_argument",
      `node metadata is ${n} bytes, above gossip.maxMetaBytes (${max}): shorten tags or names, or raise gossip.maxMetaBytes (up to 1024)`,
      { bytes: n, max });
  }
}

export interface GossipNodeOptions extends SwimOptions { seeds: string[] }

export class GossipNode implements Membership {
  readonly swim: Swim;
  readonly sync: Sync;

  constructor(o: GossipNodeOptions) {
    checkMeta(o.meta, o.timers.maxMetaBytes);
    this.swim = new Swim(o);
    this.swim.prober = new Prober(this.swim);
    this.sync = new Sync(this.swim, o.seeds);
  }

  get localId(): string { return this.swim.id; }
  get stats(): SwimStats { return this.swim.stats; }
  get keyring() { return this.swim.keyring; }

  start(): void {
    this.swim.start();
    this.sync.start();
  }

  members(): Member[] {
    return [...this.swim.members.values()].map(snapshot).sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
  }

  member(id: string): Member | undefined {
    const m = this.swim.members.get(id);
    return m && snapshot(m);
  }

  local(): Member { return snapshot(this.swim.self); }

  updateMeta(patch: Partial<NodeMeta>): void {
    const next = { ...this.swim.self.meta, ...patch };
    if (JSON.stringify(next) === JSON.stringify(this.swim.self.meta)) return;
    checkMeta(next, this.swim.t.maxMetaBytes);
    this.swim.setMeta(next);
  }

  subscribe(fn: (e: MemberEvent) => void): () => void { return this.swim.on(fn); }

  /** Graceful leave: others mark this node `left`, not `dead`. */
  async leave(waitMs: number): Promise<void> { await this.swim.leave(waitMs); }

  async stop(): Promise<void> {
    this.swim.stop();
    await this.swim.transport.close();
  }
}
