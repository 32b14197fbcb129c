/**
 * The client side of the replica protocol: one authenticated client per peer
 * node, every call under a deadline. Unary calls get objectstore.peerTimeout;
 * body streams get an idle deadline instead (cancelled when no chunk moves for
 * peerTimeout), since a many-GB object cannot fit a fixed deadline.
 */
import { createHash } from "node:crypto";
import type { GenService } from "@bufbuild/protobuf/codegenv2";
import { PeerPool, idleGuard, type HlcClock, type IdleGuard, type PeerAuth, type PeerDirectory, type TableEntry } from "../../cluster/index.js";
import { ThocError } from "../../errors/index.js";
import type { ChannelCredentials, Client } from "../../rpc/index.js";
import { ObjectStoreService } from "../../proto/index.js";
import type { BodyRange, BucketListOptions, PosRange, PutOutcome, RangeDigest, ReplicaRecord, ReplicaWrite } from "./replica-store.js";
import type { RingStateData } from "./ring-state.js";
import type { TlsMaterial } from "../../core/index.js";
import { BulkClient } from "./bulk-client.js";
import { fromWire, rangeToWire, unpackRecords, ringFromWire, ringToWire, safeNumber, toWire } from "./wire.js";

/** Deadline of a lease call: a lock round that waits for an unreachable replica delays every conditional write of the key. */
const LEASE_CALL_MS = 2000;

type Svc = typeof ObjectStoreService extends GenService<infer T> ? T : never;

/**
 * One peer node's replica protocol; its client signs every call for that node
 * (PeerPool's auth). Bodies (put, get) go over the bulk data path when there
 * is one (bulk-client.ts); the gRPC body streams below remain for a peer
 * pool built without it (unit tests of the protocol) and as the reference
 * the bulk path must match.
 */
export class Peer {
  constructor(readonly nodeId: string, private readonly client: Client<Svc>, private readonly hlc: HlcClock, private readonly timeoutMs: number, readonly bulk?: BulkClient) {}

  private unary() {
    return { timeoutMs: this.timeoutMs };
  }

  private idle(what: string, outer?: AbortSignal): IdleGuard {
    return idleGuard(what, this.nodeId, this.timeoutMs, outer);
  }

  /** Streams a replica (header, chunks, trailer); `hintFor` stores it as a hint for that node. */
  async put(w: ReplicaWrite, opts: { hintFor?: string; signal?: AbortSignal } = {}): Promise<PutOutcome> {
    if (this.bulk) return this.bulk.put(w, opts);
    const g = this.idle("PutReplica", opts.signal);
    const timeoutMs = this.timeoutMs;
    let settled = false;
    const hd = w.header;
    async function* reqs(clock: string) {
      yield { part: { case: "header" as const, value: {
        record: toWire({ ...hd, size: hd.size ?? 0, sha256: hd.sha256 ?? "" }),
        hintFor: opts.hintFor ?? "", clock,
      } } };
      // The idle deadline measures the replica (it must keep taking messages), not
      // our source: while the client's body is slow to arrive the clock is paused
      // and empty chunks keep the replica's own idle deadline from firing.
      const it = w.body[Symbol.asyncIterator]();
      const keepaliveMs = Math.max(50, Math.floor(timeoutMs / 3));
      try {
        for (;;) {
          g.pause();
          const pending = it.next();
          let r: IteratorResult<Uint8Array> | undefined;
          while (!r) {
            let timer: NodeJS.Timeout | undefined;
            const tick = new Promise<undefined>((res) => { timer = setTimeout(() => res(undefined), keepaliveMs); });
            r = await Promise.race([pending, tick]).finally(() => clearTimeout(timer));
            if (!r) {
              if (settled) return;
              g.touch();
              yield { part: { case: "chunk" as const, value: new Uint8Array(0) } };
            }
          }
          if (r.done) break;
          if (settled) return; // the replica already answered (e.g. it has a newer version)
          g.touch();
          yield { part: { case: "chunk" as const, value: r.value } };
        }
      } finally {
        if (settled) void it.return?.();
      }
      g.touch(); // from here on the replica owes us: its commit and answer are under the deadline
      const t = w.expected();
      yield { part: { case: "trailer" as const, value: { size: BigInt(t.size), sha256: t.sha256, meta: t.meta ?? "" } } };
    }
    try {
      const res = await this.client.putReplica(reqs(this.hlc.now()), { signal: g.signal });
      return { applied: res.applied, current: res.current };
    } catch (err) {
      throw g.error(err);
    } finally {
      settled = true;
      g.stop();
    }
  }

  /** The record and, when it is live and at most inlineMax bytes, its body (one request on the bulk path). */
  async headWithBody(bucket: string, key: string, inlineMax: number): Promise<{ record?: ReplicaRecord; body?: Buffer }> {
    if (this.bulk) return this.bulk.head(bucket, key, inlineMax);
    return { record: await this.head(bucket, key) };
  }

  /** The record and a body that is verified against its size and sha256 as it is read. */
  async get(bucket: string, key: string, opts: { range?: BodyRange } = {}): Promise<{ record: ReplicaRecord; body: AsyncIterable<Uint8Array> }> {
    if (this.bulk) return this.bulk.get(bucket, key, opts);
    const g = this.idle("GetReplica");
    const range = opts.range;
    const req = range ? { bucket, key, ranged: true, start: BigInt(range.start), end: BigInt(range.end) } : { bucket, key };
    const it = this.client.getReplica(req, { signal: g.signal })[Symbol.asyncIterator]();
    let first: IteratorResult<{ part: { case: string | undefined; value?: unknown } }>;
    try {
      first = await it.next();
    } catch (err) {
      g.stop();
      throw g.error(err);
    }
    if (first.done || first.value.part.case !== "record") {
      g.stop();
      throw new ThocError("data_loss", `GetReplica on ${this.nodeId}: no record in the answer`);
    }
    const record = fromWire(first.value.part.value as never);
    const expectSize = range ? Math.max(0, Math.min(record.size - 1, range.end) - range.start + 1) : record.size;
    const self = this;
    async function* body(): AsyncIterable<Uint8Array> {
      const h = createHash("sha256");
      let n = 0;
      try {
        for (;;) {
          const r = await it.next();
          if (r.done) break;
          g.touch();
          if (r.value.part.case !== "chunk") throw new ThocError("data_loss", `GetReplica on ${self.nodeId}: unexpected message`);
          const c = r.value.part.value as Uint8Array;
          n += c.byteLength;
          if (n > expectSize) break;
          h.update(c);
          yield c;
        }
      } catch (err) {
        throw g.error(err);
      } finally {
        g.stop();
        await it.return?.();
      }
      if (n !== expectSize || (!range && h.digest("hex") !== record.sha256)) {
        throw new ThocError("data_loss", `replica of ${bucket}/${key} from ${self.nodeId} is corrupt (size or sha256 mismatch)`, { node: self.nodeId });
      }
    }
    return { record, body: body() };
  }

  async head(bucket: string, key: string): Promise<ReplicaRecord | undefined> {
    if (this.bulk) return (await this.bulk.head(bucket, key)).record;
    const res = await this.client.headReplica({ bucket, key }, { ...this.unary() });
    return res.record ? fromWire(res.record) : undefined;
  }

  async delete(bucket: string, key: string, version: string, opts: { hintFor?: string } = {}): Promise<PutOutcome> {
    const res = await this.client.deleteReplica({ bucket, key, version, hintFor: opts.hintFor ?? "", clock: this.hlc.now() }, { ...this.unary() });
    return { applied: res.applied, current: res.current };
  }

  async *list(range: PosRange, opts: { after?: { pos: number; pkey: string }; limit?: number } = {}): AsyncIterable<ReplicaRecord> {
    const g = this.idle("ListRange");
    for await (const r of g.stream(this.client.listRange({
      range: rangeToWire(range), limit: opts.limit ?? 0,
      hasAfter: !!opts.after, afterPos: BigInt(opts.after?.pos ?? 0), afterKey: opts.after?.pkey ?? "",
    }, { signal: g.signal }))) yield fromWire(r.record);
  }

  async digest(range: PosRange, parts: number): Promise<RangeDigest[]> {
    const res = await this.client.digestRange({ range: rangeToWire(range), parts }, { ...this.unary() });
    return res.digests.map((d) => ({ hash: d.hash, count: safeNumber(d.count, "count") }));
  }

  /** One bucket's records in key order (see ReplicaStore.listBucket). */
  async *listBucket(bucket: string, opts: BucketListOptions = {}, signal?: AbortSignal): AsyncIterable<ReplicaRecord> {
    const g = this.idle("ListBucket", signal);
    const prefix = opts.prefix ?? "";
    for await (const r of g.stream(this.client.listBucket({
      bucket, prefix, hasAfter: opts.after !== undefined, after: opts.after ?? "", limit: opts.limit ?? 0, batch: true, packed: true,
    }, { signal: g.signal }))) {
      // Packed (one JSON array), batched (records) from a server that predates packing, or one per message from one that predates batching (record).
      if (r.packed.length) yield* unpackRecords(r.packed, bucket, prefix);
      else if (r.records.length) for (const x of r.records) yield fromWire(x);
      else if (r.record) yield fromWire(r.record);
    }
  }

  /** Full-state table exchange: sends ours (or only our digest), returns theirs (entries empty when the digests match). */
  async syncTable(table: string, digest: string, entries: TableEntry[]): Promise<{ digest: string; entries: TableEntry[] }> {
    const res = await this.client.syncTable({ table, digest, entries }, { ...this.unary() });
    return { digest: res.digest, entries: res.entries.map((e) => ({ key: e.key, version: e.version, deleted: e.deleted, value: e.value })) };
  }

  /** The ring's and every table's digest on the peer (ours are sent along for its logs and future use). */
  async syncDigests(ringDigest: string, tables: Record<string, string>): Promise<{ ringDigest: string; tables: Record<string, string> }> {
    const res = await this.client.syncDigests({ ringDigest, tables }, { ...this.unary() });
    return { ringDigest: res.ringDigest, tables: res.tables };
  }

  async getRing(): Promise<RingStateData> {
    return ringFromWire(await this.client.getRing({}, { ...this.unary() }));
  }

  async mergeRing(s: RingStateData, digest: string): Promise<RingStateData> {
    return ringFromWire(await this.client.mergeRing(ringToWire(s, digest), { ...this.unary() }));
  }

  /** Asks for (or renews) a key's conditional-write lease (key-leases.ts); a short deadline, since a lock round waits for its slowest answer. */
  async lockKey(bucket: string, key: string, owner: string, ttlMs: number): Promise<{ granted: boolean; holder: string }> {
    const res = await this.client.lockKey({ bucket, key, owner, ttlMs }, { timeoutMs: Math.min(this.timeoutMs, LEASE_CALL_MS) });
    return { granted: res.granted, holder: res.holder };
  }

  async unlockKey(bucket: string, key: string, owner: string): Promise<boolean> {
    return (await this.client.unlockKey({ bucket, key, owner }, { timeoutMs: Math.min(this.timeoutMs, LEASE_CALL_MS) })).released;
  }

  /** Root digests of disjoint arcs, one per arc, in one call (see ReplicaStore.digestArcs). */
  async digestArcs(arcs: readonly PosRange[]): Promise<RangeDigest[]> {
    const res = await this.client.digestArcs({ arcs: arcs.map(rangeToWire) }, { ...this.unary() });
    if (res.digests.length !== arcs.length) throw new ThocError("data_loss", `DigestArcs on ${this.nodeId}: ${res.digests.length} digests for ${arcs.length} arcs`);
    return res.digests.map((d) => ({ hash: d.hash, count: safeNumber(d.count, "count") }));
  }
}

export interface PeersOptions {
  auth: PeerAuth;
  directory: PeerDirectory;
  hlc: HlcClock;
  /** objectstore.peerTimeout */
  timeoutMs: number;
  /** TLS wherever the gRPC API serves it (cluster/ peerCredentials). */
  credentials?: ChannelCredentials;
  /**
   * Bodies over the bulk data path, secured with this material (undefined:
   * plaintext); absent: bodies stream over gRPC.
   */
  bulk?: { tls: () => TlsMaterial | undefined; sourceIdleMs?: number };
}

/** The replica protocol's clients, one per peer node. */
export class Peers extends PeerPool<Svc, Peer> {
  constructor(opts: PeersOptions) {
    super({
      service: ObjectStoreService, directory: opts.directory, credentials: opts.credentials, auth: opts.auth,
      make: (nodeId, client, address) => new Peer(nodeId, client, opts.hlc, opts.timeoutMs, opts.bulk && new BulkClient({
        nodeId, address, auth: opts.auth, hlc: opts.hlc, tls: opts.bulk.tls, timeoutMs: opts.timeoutMs,
        ...(opts.bulk.sourceIdleMs !== undefined ? { sourceIdleMs: opts.bulk.sourceIdleMs } : {}),
      })),
      drop: (peer) => peer.bulk?.close(),
    });
  }
}
