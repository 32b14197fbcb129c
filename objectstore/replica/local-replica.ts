/**
 * A replica as the coordinator sees it (ReplicaTarget: this node's own store,
 * or a peer over the network, peer.ts), and this node's own one.
 */
import { ThocError } from "../../errors/index.js";
import type { HintStore } from "./hints.js";
import { knownWrite, once, tombstoneRecord, type BodyRange, type PutOutcome, type ReplicaRecord, type ReplicaStore, type ReplicaWrite } from "./replica-store.js";

/** What the coordinator needs of a replica, local or remote (Peer implements it). */
export interface ReplicaTarget {
  readonly nodeId: string;
  put(w: ReplicaWrite, opts?: { hintFor?: string; signal?: AbortSignal }): Promise<PutOutcome>;
  get(bucket: string, key: string, opts?: { range?: BodyRange }): Promise<{ record: ReplicaRecord; body: AsyncIterable<Uint8Array> }>;
  head(bucket: string, key: string): Promise<ReplicaRecord | undefined>;
  /** The record and, when live and at most inlineMax bytes, its verified body in the same round trip (remote replicas). */
  headWithBody?(bucket: string, key: string, inlineMax: number): Promise<{ record?: ReplicaRecord; body?: Uint8Array }>;
  delete(bucket: string, key: string, version: string, opts?: { hintFor?: string }): Promise<PutOutcome>;
}

/** This node's own replica, without a network hop. */
export class LocalReplica implements ReplicaTarget {
  constructor(readonly nodeId: string, private readonly store: ReplicaStore, private readonly hints: HintStore) {}
  private target(hintFor?: string) {
    return hintFor ? this.hints.for(hintFor) : this.store;
  }
  put(w: ReplicaWrite, opts: { hintFor?: string } = {}) {
    return this.target(opts.hintFor).put(w);
  }
  async get(bucket: string, key: string, opts: { range?: BodyRange } = {}) {
    const got = await this.store.get(bucket, key, opts);
    if (!got) throw new ThocError("not_found", `no replica of ${bucket}/${key} on this node`);
    return got;
  }
  head(bucket: string, key: string) {
    return this.store.head(bucket, key);
  }
  /**
   * The record and, when live and at most inlineMax bytes, its body (verified
   * as every whole read is): a read through a node that holds a replica then
   * needs nothing more of its own store once the quorum has answered.
   */
  async headWithBody(bucket: string, key: string, inlineMax: number): Promise<{ record?: ReplicaRecord; body?: Uint8Array }> {
    const record = await this.store.head(bucket, key);
    if (!record || record.tombstone || record.size === 0 || record.size > inlineMax) return { record };
    const parts: Uint8Array[] = [];
    try {
      const got = await this.store.get(bucket, key);
      if (got?.record.version !== record.version) return { record };
      for await (const c of got.body) parts.push(c);
    } catch {
      // Damaged here: the record alone; the read takes the body from another holder and repairs this one (Coordinator.get).
      return { record };
    }
    return { record, body: parts.length === 1 ? parts[0]! : Buffer.concat(parts) };
  }
  delete(bucket: string, key: string, version: string, opts: { hintFor?: string } = {}) {
    return this.target(opts.hintFor).put(knownWrite(tombstoneRecord(bucket, key, version), once()));
  }
}
