/**
 * The server side of the replica protocol (ObjectStoreService): serves this
 * node's replica store, its hints for other nodes, and its ring state. Wrap it
 * with `authenticated` (auth.ts) before registering it.
 */
import { ThocError } from "../../errors/index.js";
import type { ImplOf } from "../../rpc/index.js";
import { ObjectStoreService, type PutReplicaRequest } from "../../proto/index.js";
import type { HlcClock } from "../../cluster/index.js";
import type { HintStore } from "./hints.js";
import { KeyLeases } from "./key-leases.js";
import { knownWrite, once, tombstoneRecord, validateHeader, type ReplicaRecord, type ReplicaStore, type ReplicaWrite } from "./replica-store.js";
import { RingState, type RingStateData } from "./ring-state.js";
import type { ReplicatedTable } from "../../cluster/index.js";
import { fromWire, packRecords, rangeFromWire, ringFromWire, ringToWire, safeNumber, toWire } from "./wire.js";

/** Holds this node's ring state; the durable one persists every change before resolving. */
export interface RingHolder {
  state(): RingState;
  merge(data: RingStateData): Promise<boolean>;
  /** Called after every change (rebuild placement, start rebalancing). */
  onChange(fn: () => void): void;
}

export class MemoryRingHolder implements RingHolder {
  private readonly listeners: (() => void)[] = [];
  constructor(private readonly s: RingState = new RingState()) {}
  state(): RingState {
    return this.s;
  }
  async merge(data: RingStateData): Promise<boolean> {
    const changed = this.s.merge(data);
    if (changed) for (const l of this.listeners) l();
    return changed;
  }
  onChange(fn: () => void): void {
    this.listeners.push(fn);
  }
}

export interface ReplicaServiceDeps {
  store: ReplicaStore;
  hints: HintStore;
  hlc: HlcClock;
  ring: RingHolder;
  /** Tables replicated to every node (SyncTable), by name. */
  tables?: (name: string) => ReplicatedTable | undefined;
  /** Every such table (SyncDigests answers with all their digests). */
  allTables?: () => Iterable<ReplicatedTable>;
  /** Bytes per GetReplica message. */
  chunkSize?: number;
  /**
   * A PutReplica stream that sends nothing for this long is dropped (objectstore.peerTimeout):
   * a sender whose host vanished must not hold a half-received replica open for hours.
   */
  idleTimeoutMs?: number;
  /** This node's conditional-write leases (LockKey, UnlockKey); shared with its own lock asker (key-lock.ts). Default: a table of its own. */
  leases?: KeyLeases;
}

/** The next message of a stream, or deadline_exceeded after ms of silence. */
async function nextWithin<T>(it: AsyncIterator<T>, ms: number, what: string): Promise<IteratorResult<T>> {
  if (!Number.isFinite(ms)) return it.next();
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      it.next(),
      new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new ThocError("deadline_exceeded", `${what}: the sender went silent for ${ms} ms; nothing stored`)), ms); }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

const MAX_DIGEST_PARTS = 1024;
const MAX_LIST = 10_000;
/** Records per ListBucket message when the caller asks for batches. */
const LIST_BATCH = 256;
/** About this many bytes of records per packed ListBucket message. */
const PACK_BYTES = 1 << 20;
const MAX_DIGEST_ARCS = 1 << 16;

/** Splits a body into messages of at most `size` bytes. */
export async function* rechunk(body: AsyncIterable<Uint8Array>, size: number): AsyncIterable<Uint8Array> {
  for await (const c of body) {
    for (let off = 0; off < c.byteLength; off += size) yield c.subarray(off, Math.min(c.byteLength, off + size));
  }
}

export function replicaService(deps: ReplicaServiceDeps): ImplOf<typeof ObjectStoreService> {
  const chunkSize = deps.chunkSize ?? 256 << 10;
  const idle = deps.idleTimeoutMs ?? Infinity;
  const target = (hintFor: string) => (hintFor ? deps.hints.for(hintFor) : deps.store);
  const observe = (clock: string) => { if (clock) deps.hlc.update(clock); };
  const leases = deps.leases ?? new KeyLeases();

  return {
    async putReplica(reqs) {
      const it = reqs[Symbol.asyncIterator]();
      const first = await nextWithin(it, idle, "PutReplica");
      if (first.done || first.value.part.case !== "header") throw new ThocError("invalid_argument", "PutReplica: the first message must be the header");
      const h = first.value.part.value;
      const rec = fromWire(h.record);
      observe(h.clock);
      const header: ReplicaWrite["header"] = { bucket: rec.bucket, key: rec.key, version: rec.version, tombstone: rec.tombstone, meta: rec.meta };
      // A zero size with the empty-body digest is "unknown until the trailer" for a streamed body;
      // the wire cannot tell unset from 0, so only a real digest pins the header's values.
      if (rec.sha256) Object.assign(header, { size: rec.size, sha256: rec.sha256 });
      validateHeader(header);
      let trailer: { size: number; sha256: string; meta?: string } | undefined;
      async function* body(): AsyncIterable<Uint8Array> {
        for (;;) {
          const n = await nextWithin(it, idle, "PutReplica");
          if (n.done) return;
          const part = (n.value as PutReplicaRequest).part;
          if (part.case === "chunk") {
            if (trailer) throw new ThocError("invalid_argument", "PutReplica: data after the trailer");
            yield part.value;
          } else if (part.case === "trailer") {
            if (trailer) throw new ThocError("invalid_argument", "PutReplica: two trailers");
            trailer = { size: safeNumber(part.value.size, "trailer size"), sha256: part.value.sha256, ...(part.value.meta ? { meta: part.value.meta } : {}) };
          } else throw new ThocError("invalid_argument", "PutReplica: a second header");
        }
      }
      const out = await target(h.hintFor).put({
        header,
        body: body(),
        expected: () => {
          if (!trailer) throw new ThocError("data_loss", `PutReplica ${rec.bucket}/${rec.key}: the stream ended before its trailer (sender cancelled or died); nothing stored`);
          return trailer;
        },
      });
      return out;
    },

    async *getReplica(req) {
      let range: { start: number; end: number } | undefined;
      if (req.ranged) {
        range = { start: safeNumber(req.start, "start"), end: safeNumber(req.end, "end") };
        if (range.end < range.start) throw new ThocError("invalid_argument", `GetReplica: range end ${range.end} before start ${range.start}`);
      }
      const got = await deps.store.get(req.bucket, req.key, range ? { range } : {});
      if (!got) throw new ThocError("not_found", `no replica of ${req.bucket}/${req.key} on this node`, { bucket: req.bucket, key: req.key });
      yield { part: { case: "record", value: toWire(got.record) } };
      for await (const c of rechunk(got.body, chunkSize)) yield { part: { case: "chunk", value: c } };
    },

    async headReplica(req) {
      const rec = await deps.store.head(req.bucket, req.key);
      return rec ? { record: toWire(rec) } : {};
    },

    async deleteReplica(req) {
      observe(req.clock);
      return target(req.hintFor).put(knownWrite(tombstoneRecord(req.bucket, req.key, req.version), once()));
    },

    async *listRange(req) {
      const limit = Math.min(req.limit || MAX_LIST, MAX_LIST);
      const after = req.hasAfter ? { pos: safeNumber(req.afterPos, "after_pos"), pkey: req.afterKey } : undefined;
      for await (const r of deps.store.list(rangeFromWire(req.range), { after, limit })) yield { record: toWire(r) };
    },

    async digestRange(req) {
      const parts = req.parts || 1;
      if (parts > MAX_DIGEST_PARTS) throw new ThocError("invalid_argument", `DigestRange: at most ${MAX_DIGEST_PARTS} parts`);
      const digests = await deps.store.digest(rangeFromWire(req.range), parts);
      return { digests: digests.map((d) => ({ hash: d.hash, count: BigInt(d.count) })) };
    },

    async *listBucket(req) {
      if (!req.bucket) throw new ThocError("invalid_argument", "ListBucket: bucket missing");
      const limit = Math.min(req.limit || MAX_LIST, MAX_LIST);
      const recs = deps.store.listBucket(req.bucket, { prefix: req.prefix, ...(req.hasAfter ? { after: req.after } : {}), limit });
      if (req.packed) {
        let batch: ReplicaRecord[] = [];
        let bytes = 0;
        for await (const r of recs) {
          batch.push(r);
          // Roughly what the record takes packed (in characters): a message stays within a few MiB, far below the 64 MiB cap (rpc/).
          bytes += r.key.length + r.meta.length + 140;
          if (bytes >= PACK_BYTES) {
            yield { packed: packRecords(batch, req.prefix) };
            batch = [];
            bytes = 0;
          }
        }
        if (batch.length) yield { packed: packRecords(batch, req.prefix) };
        return;
      }
      if (!req.batch) {
        for await (const r of recs) yield { record: toWire(r) };
        return;
      }
      let batch: ReturnType<typeof toWire>[] = [];
      for await (const r of recs) {
        batch.push(toWire(r));
        if (batch.length >= LIST_BATCH) {
          yield { records: batch };
          batch = [];
        }
      }
      if (batch.length) yield { records: batch };
    },

    async syncTable(req) {
      const t = deps.tables?.(req.table);
      if (!t) throw new ThocError("not_found", `SyncTable: no table ${JSON.stringify(req.table)} on this node`);
      if (req.entries.length) await t.merge(req.entries.map((e) => ({ key: e.key, version: e.version, deleted: e.deleted, value: e.value })));
      const digest = t.digest();
      if (req.digest === digest) return { table: t.name, digest, entries: [] };
      return { table: t.name, digest, entries: t.all() };
    },

    async syncDigests() {
      const tables: Record<string, string> = {};
      for (const t of deps.allTables?.() ?? []) tables[t.name] = t.digest();
      return { ringDigest: deps.ring.state().digest(), tables };
    },

    async getRing() {
      const s = deps.ring.state();
      return ringToWire(s.toJSON(), s.digest());
    },

    async mergeRing(req) {
      await deps.ring.merge(RingState.fromJSON(ringFromWire(req)).toJSON());
      const s = deps.ring.state();
      return ringToWire(s.toJSON(), s.digest());
    },

    async lockKey(req) {
      return leases.lockKey(req.bucket, req.key, req.owner, req.ttlMs);
    },

    async unlockKey(req) {
      return { released: await leases.unlockKey(req.bucket, req.key, req.owner) };
    },

    async digestArcs(req) {
      // A ring has vnodes points per node; this bounds the answer, not real rings.
      if (req.arcs.length > MAX_DIGEST_ARCS) throw new ThocError("invalid_argument", `DigestArcs: at most ${MAX_DIGEST_ARCS} arcs per call`);
      const digests = await deps.store.digestArcs(req.arcs.map((a) => rangeFromWire(a)));
      return { digests: digests.map((d) => ({ hash: d.hash, count: BigInt(d.count) })) };
    },
  };
}
