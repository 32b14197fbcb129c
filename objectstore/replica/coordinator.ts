/**
 * Quorum coordination over the replica protocol: the node that receives an S3
 * request writes to the key's N preferred nodes and acknowledges after W
 * durable acks; it reads from the preferred nodes, answers once R replied with
 * the newest version among them, and repairs stale replicas in the background.
 *
 * Guarantees and limits (docs/objectstore.md):
 *  - an acknowledged write is on at least W preferred nodes (hints never count);
 *  - with R + W > N a read sees the newest acknowledged write;
 *  - when fewer than W (R) preferred nodes are up the request fails fast with
 *    quorumError (S3: 503 ServiceUnavailable) before anything is sent;
 *  - a write that fails after it started (replicas died mid-stream) is not
 *    acknowledged, but the copies that did commit remain and may surface
 *    later through read repair, as in Dynamo and Cassandra.
 */
import { createHash } from "node:crypto";
import { ThocError, quorumError } from "../../errors/index.js";
import { successorHlc, type HlcClock, type Liveness } from "../../cluster/index.js";
import { blobError } from "../blob/index.js";
import type { ReplicaTarget } from "./local-replica.js";
import { knownWrite, once, tombstoneRecord, type BodyRange, type PutOutcome, type ReplicaRecord, type ReplicaWrite } from "./replica-store.js";
import { placementKey, type Ring } from "./ring.js";
import { Tee } from "./tee.js";

/** The liveness view (membership): alive and suspect are up; dead and left are down. */

export interface CoordinatorLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface CoordinatorOptions {
  self: string;
  ring: () => Ring;
  /** A target for a node id; throws (unavailable) when the node has no known address. */
  target: (nodeId: string) => ReplicaTarget;
  hlc: HlcClock;
  replicas: number;
  writeQuorum: number;
  readQuorum: number;
  liveness?: Liveness;
  log?: CoordinatorLog;
  /** A replica that failed a call counts as down for this long (before membership notices). */
  failureBackoffMs?: number;
  /**
   * A stale replica of a body larger than 1 MiB is repaired only after this
   * long, and only if it is still stale then (default 3000 ms): right after a
   * write its last copy is usually still streaming, and repairing it at once
   * sent the whole body a second time beside it.
   */
  readRepairDelayMs?: number;
  now?: () => number;
}

export interface Quorum { n: number; w: number; r: number }

/** A read's quorum round: the newest record, the nodes holding that version, and its body when a small one came with the records. */
export interface HeadResult {
  record?: ReplicaRecord;
  holders: string[];
  body?: Uint8Array;
}

interface Plan {
  pkey: string;
  q: Quorum;
  prefs: string[];
  up: string[];
  /** Down preferred node → stand-in that keeps its hint. */
  hints: Map<string, string>;
}

export class Coordinator {
  /** Counters for metrics. */
  readonly stats = { quorumFailures: 0, readRepairs: 0 };
  private lastQuorum = "";
  private readonly failedAt = new Map<string, number>();
  private readonly background = new Set<Promise<unknown>>();
  /** Read repairs under way or waiting, by node + key: the version being brought there. */
  private readonly repairing = new Map<string, string>();
  /** Timers of deferred read repairs; settled() cuts them short (anti-entropy catches what they would have fixed). */
  private readonly deferred = new Map<NodeJS.Timeout, () => void>();
  private settling = 0;
  private readonly now: () => number;

  constructor(private readonly opts: CoordinatorOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** N, W and R for the current ring: lowered (and logged) when it has fewer than N nodes. */
  quorum(ring: Ring = this.opts.ring()): Quorum {
    const n = Math.max(1, Math.min(this.opts.replicas, ring.size));
    const q = { n, w: Math.min(this.opts.writeQuorum, n), r: Math.min(this.opts.readQuorum, n) };
    const tag = `${q.n}/${q.w}/${q.r}`;
    if (tag !== this.lastQuorum) {
      if (q.n < this.opts.replicas) {
        this.opts.log?.warn({ ringSize: ring.size, n: q.n, w: q.w, r: q.r, configured: `${this.opts.replicas}/${this.opts.writeQuorum}/${this.opts.readQuorum}` },
          "object store: ring has fewer nodes than objectstore.replicas; N/W/R lowered until more nodes join");
      } else if (this.lastQuorum) this.opts.log?.info({ n: q.n, w: q.w, r: q.r }, "object store: N/W/R back to configured values");
      this.lastQuorum = tag;
    }
    return q;
  }

  private qerr(...a: Parameters<typeof quorumError>): ThocError {
    this.stats.quorumFailures++;
    return quorumError(...a);
  }

  /** Up as membership sees it, and not seen failing a call in the last failureBackoffMs (a node just killed, before gossip notices). */
  isUp(id: string): boolean {
    if (id === this.opts.self) return true;
    const failed = this.failedAt.get(id);
    if (failed !== undefined && this.now() - failed < (this.opts.failureBackoffMs ?? 2000)) return false;
    return this.opts.liveness?.isUp(id) ?? true;
  }

  private noteFailure(id: string, err: unknown): void {
    const e = ThocError.from(err);
    // Only "cannot reach it": a corrupt replica or a stream we cancelled ourselves says nothing about liveness.
    if (e.code === "unavailable" || e.code === "deadline_exceeded") this.failedAt.set(id, this.now());
  }

  private noteSuccess(id: string): void {
    this.failedAt.delete(id);
  }

  /** The key's N preferred nodes on the current ring (where its replicas go; the conditional-write lock asks them, key-lock.ts). */
  preferenceList(bucket: string, key: string): string[] {
    const ring = this.opts.ring();
    if (ring.size === 0) throw new ThocError("unavailable", "object store: the ring is empty (no node has joined yet)");
    return ring.walk(placementKey(bucket, key)).slice(0, this.quorum(ring).n);
  }

  private plan(bucket: string, key: string): Plan {
    const ring = this.opts.ring();
    if (ring.size === 0) throw new ThocError("unavailable", "object store: the ring is empty (no node has joined yet)");
    const q = this.quorum(ring);
    const pkey = placementKey(bucket, key);
    const walk = ring.walk(pkey);
    const prefs = walk.slice(0, q.n);
    const up = prefs.filter((id) => this.isUp(id));
    const hints = new Map<string, string>();
    const standIns = walk.slice(q.n).filter((id) => this.isUp(id));
    for (const down of prefs.filter((id) => !up.includes(id))) {
      // Dynamo's stand-in: the next node on the ring; with no spare node, a live preferred one.
      const holder = standIns.shift() ?? up.find((id) => ![...hints.values()].includes(id)) ?? up[0];
      if (holder) hints.set(down, holder);
    }
    return { pkey, q, prefs, up, hints };
  }

  private track<T>(p: Promise<T>): void {
    const t = p.catch(() => undefined).finally(() => this.background.delete(t));
    this.background.add(t);
  }

  /** Resolves when background work (straggling replicas, hints, read repair) has finished: for tests and shutdown. */
  async settled(): Promise<void> {
    this.settling++;
    try {
      while (this.background.size) {
        for (const [t, skip] of this.deferred) {
          clearTimeout(t);
          skip();
        }
        this.deferred.clear();
        await Promise.all([...this.background]);
      }
    } finally {
      this.settling--;
    }
  }

  /** Resolves true after ms, or false at once while settled() runs (or when it cuts the wait short). */
  private defer(ms: number): Promise<boolean> {
    if (this.settling > 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.deferred.delete(t); resolve(true); }, ms);
      t.unref?.();
      this.deferred.set(t, () => resolve(false));
    });
  }

  /**
   * Writes a new version of an object. `header` carries everything but the
   * version (minted here) and the size/sha256 (computed while streaming, sent
   * in each replica's trailer). Resolves with the stored record after W acks.
   * opts.finalMeta: the record's meta, asked once the body has passed (ETag and checksums go in the trailer);
   * opts.sha256: the body's hex SHA-256 once it has passed, when the caller hashes it anyway (else the tee does).
   */
  async put(header: Omit<ReplicaRecord, "version" | "size" | "sha256" | "tombstone">, body: AsyncIterable<Uint8Array>, opts: { finalMeta?: () => string; sha256?: () => string; size?: number; version?: string } = {}): Promise<ReplicaRecord> {
    const plan = this.plan(header.bucket, header.key);
    if (plan.up.length < plan.q.w) {
      throw this.qerr(`PUT ${header.bucket}/${header.key}`, plan.up.length, plan.q.w, plan.q.n, `preferred replicas down: ${plan.prefs.filter((p) => !plan.up.includes(p)).join(", ")}`);
    }
    if (opts.size !== undefined && opts.size <= SMALL_BODY_MAX) return this.putSmall(plan, header, body, opts);
    const version = opts.version ?? this.opts.hlc.now();
    const tee = new Tee(body, undefined, opts.sha256);
    const abort = new AbortController();
    const h: ReplicaWrite["header"] = { ...header, version, tombstone: false };
    // The final meta is computed once, when the first replica asks for its trailer.
    let meta: string | undefined;
    const expected = (): { size: number; sha256: string; meta?: string } => {
      const t = tee.expected();
      if (opts.finalMeta && meta === undefined) meta = opts.finalMeta();
      return meta === undefined ? t : { ...t, meta };
    };
    const sends = [
      ...plan.up.map((id) => ({ id, hintFor: undefined as string | undefined })),
      ...[...plan.hints].map(([down, holder]) => ({ id: holder, hintFor: down })),
    ].map(({ id, hintFor }) => {
      const branch = tee.branch();
      const p = (async () => {
        try {
          const local = id === this.opts.self ? { local: true } : {};
          return await this.opts.target(id).put({ header: h, body: abortable(branch, abort.signal), expected, ...local }, { hintFor, signal: abort.signal });
        } finally {
          branch.detach();
        }
      })();
      return { id, hintFor, p };
    });
    try {
      return await this.awaitQuorum(`PUT ${header.bucket}/${header.key}`, plan, sends, () => abort.abort(), () => tee.sourceError !== undefined || abort.signal.aborted, () => {
        const t = expected();
        return { ...h, tombstone: false, size: t.size, sha256: t.sha256, meta: t.meta ?? h.meta };
      });
    } catch (err) {
      // The client's body failed (disconnect, bad digest upstream): say so, not "quorum".
      // As it came: the S3 layer knows its own errors (S3Error), and others are wrapped at the edge.
      if (tee.sourceError !== undefined) throw tee.sourceError;
      throw err;
    }
  }

  /**
   * A body announced small is read whole first, then sent to every replica
   * (this node's included, at the same time) as one request with its size,
   * sha256 and final meta up front: one round trip on a warm connection, no
   * stream set-up, no trailer.
   */
  private async putSmall(plan: Plan, header: Omit<ReplicaRecord, "version" | "size" | "sha256" | "tombstone">, body: AsyncIterable<Uint8Array>, opts: { finalMeta?: () => string; version?: string }): Promise<ReplicaRecord> {
    const chunks: Uint8Array[] = [];
    let n = 0;
    for await (const c of body) {
      n += c.byteLength;
      // Longer than announced: the S3 layer's own check refuses it; this only bounds memory.
      if (n > SMALL_BODY_MAX) throw new ThocError("invalid_argument", `PUT ${header.bucket}/${header.key}: the body is longer than announced`);
      chunks.push(c);
    }
    const data = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    const rec: ReplicaRecord = {
      ...header, version: opts.version ?? this.opts.hlc.now(), tombstone: false, size: n,
      sha256: createHash("sha256").update(data).digest("hex"), meta: opts.finalMeta ? opts.finalMeta() : header.meta,
    };
    const sends = [
      ...plan.up.map((id) => ({ id, hintFor: undefined as string | undefined })),
      ...[...plan.hints].map(([down, holder]) => ({ id: holder, hintFor: down })),
    ].map(({ id, hintFor }) => ({ id, hintFor, p: attempt(() => this.opts.target(id).put({ ...knownWrite(rec, once(data)), ...(id === this.opts.self ? { local: true } : {}) }, { hintFor })) }));
    return this.awaitQuorum(`PUT ${header.bucket}/${header.key}`, plan, sends, () => undefined, () => false, () => rec);
  }

  /**
   * A new timestamp of this node's clock, after `seen` (a record version read
   * from the cluster) when given: a write stamped with it, or with a later
   * one, wins over that record (opts.version of put; versioned buckets name
   * versions after it so version order and last-writer-wins agree).
   */
  stamp(seen?: string): string {
    if (seen !== undefined) {
      try {
        return this.opts.hlc.update(seen);
      } catch {
        // A timestamp too far ahead (a node with a wrong clock): ours, as every other write does.
      }
    }
    return this.opts.hlc.now();
  }

  /**
   * Deletes by writing a tombstone with a new version (W acks, hints for down
   * replicas). With `after`, the tombstone's version is the one just after
   * that version instead of now: it deletes that version and anything older,
   * but a write made since (a newer version) still wins over it. This is how
   * background deleters (lifecycle) delete what they looked at, never an
   * object a client wrote a moment later.
   */
  async delete(bucket: string, key: string, opts: { after?: string } = {}): Promise<ReplicaRecord> {
    const plan = this.plan(bucket, key);
    if (plan.up.length < plan.q.w) throw this.qerr(`DELETE ${bucket}/${key}`, plan.up.length, plan.q.w, plan.q.n, "preferred replicas down");
    const rec = tombstoneRecord(bucket, key, opts.after !== undefined ? successorHlc(opts.after, this.opts.self) : this.opts.hlc.now());
    const sends = [
      ...plan.up.map((id) => ({ id, hintFor: undefined as string | undefined })),
      ...[...plan.hints].map(([down, holder]) => ({ id: holder, hintFor: down })),
    ].map(({ id, hintFor }) => ({ id, hintFor, p: attempt(() => this.opts.target(id).delete(bucket, key, rec.version, { hintFor })) }));
    return this.awaitQuorum(`DELETE ${bucket}/${key}`, plan, sends, () => undefined, () => false, () => rec);
  }

  /** Resolves after W acks from preferred nodes; rejects as soon as W can no longer be reached. */
  private awaitQuorum(op: string, plan: Plan, sends: { id: string; hintFor?: string; p: Promise<PutOutcome> }[], cancel: () => void, ourFault: () => boolean, result: () => ReplicaRecord): Promise<ReplicaRecord> {
    const { w, n } = plan.q;
    const primaries = sends.filter((s) => !s.hintFor);
    return new Promise<ReplicaRecord>((resolve, reject) => {
      let acks = 0;
      let fails = 0;
      let done = false;
      const errors: string[] = [];
      for (const s of sends) {
        const p = s.p.then(
          () => {
            this.noteSuccess(s.id);
            if (s.hintFor || done) return;
            if (++acks >= w) { done = true; resolve(result()); }
          },
          (err: unknown) => {
            const e = ThocError.from(err);
            // A replica stream that failed because our body failed says nothing about the replica.
            if (!ourFault()) {
              this.noteFailure(s.id, err);
              this.opts.log?.warn({ node: s.id, hintFor: s.hintFor, code: e.code, err: e.message }, `object store: ${op}: replica write failed`);
            }
            if (s.hintFor || done) return;
            errors.push(`${s.id}: ${e.message}`);
            if (primaries.length - ++fails < w) {
              done = true;
              cancel(); // stop the other streams before they commit: fewer copies of a failed write
              reject(this.qerr(op, acks, w, n, errors.join("; ")));
            }
          },
        );
        this.track(p);
      }
    });
  }

  /** The newest record among R replies (tombstones included), with read repair of stale replicas. */
  async head(bucket: string, key: string): Promise<HeadResult> {
    const plan = this.plan(bucket, key);
    const { r, n } = plan.q;
    if (plan.up.length < r) throw this.qerr(`GET ${bucket}/${key}`, plan.up.length, r, n, "preferred replicas down");
    const replies = new Map<string, ReplicaRecord | undefined>();
    // A coordinator that holds no replica asks for small bodies with the records: the read is then one round trip.
    // One that holds a replica reads its own small body beside the question to the others (no hop, no second look-up after).
    const inline = plan.up.includes(this.opts.self) ? 0 : SMALL_BODY_MAX;
    const bodies = new Map<string, Uint8Array>();
    const ask = async (id: string): Promise<ReplicaRecord | undefined> => {
      const t = this.opts.target(id);
      const max = id === this.opts.self ? SMALL_BODY_MAX : inline;
      if (!max || !t.headWithBody) return t.head(bucket, key);
      const got = await t.headWithBody(bucket, key, max);
      if (got.body) bodies.set(id, got.body);
      return got.record;
    };
    const asks = plan.up.map((id) => attempt(() => ask(id)).then(
      (rec) => { this.noteSuccess(id); replies.set(id, rec); },
      (err: unknown) => { this.noteFailure(id, err); throw err; },
    ));
    await new Promise<void>((resolve, reject) => {
      let ok = 0;
      let fails = 0;
      const errors: string[] = [];
      asks.forEach((a, i) => a.then(
        () => { if (++ok === r) resolve(); },
        (err: unknown) => {
          errors.push(`${plan.up[i]}: ${ThocError.from(err).message}`);
          if (plan.up.length - ++fails < r) reject(this.qerr(`GET ${bucket}/${key}`, ok, r, n, errors.join("; ")));
        },
      ));
    });
    const newest = newestOf([...replies.values()]);
    // Repair once every reply is in (late ones included), off the request path.
    this.track(Promise.allSettled(asks).then(() => this.repair(bucket, key, replies)));
    const holders = newest ? [...replies].filter(([, rec]) => rec?.version === newest.version).map(([id]) => id) : [];
    const body = holders.map((id) => bodies.get(id)).find((b) => b !== undefined);
    return { record: newest, holders, ...(body ? { body } : {}) };
  }

  /** The newest live version with its body; not_found (NoSuchKey) when absent or deleted. */
  async get(bucket: string, key: string, opts: { range?: BodyRange; known?: HeadResult } = {}): Promise<{ record: ReplicaRecord; body: AsyncIterable<Uint8Array> }> {
    const { record, holders, body } = opts.known ?? await this.head(bucket, key);
    if (!record || record.tombstone) throw blobError("NoSuchKey", `no object ${bucket}/${key}`, { bucket, key });
    // The quorum round brought the (small, verified) body along.
    if (body) return { record, body: once(opts.range ? body.subarray(opts.range.start, Math.min(body.length, opts.range.end + 1)) : body) };
    const order = [...holders].sort((a, b) => (a === this.opts.self ? -1 : b === this.opts.self ? 1 : 0));
    let last: unknown;
    const damaged: string[] = [];
    for (const id of order) {
      try {
        const got = await this.opts.target(id).get(bucket, key, opts.range ? { range: opts.range } : {});
        if (got.record.version === record.version) {
          // A holder that refused its copy as damaged gets this version again from a good one, off the request path.
          for (const bad of damaged) this.track(this.rewrite(bad, id, bucket, key, record.version));
          return got;
        }
        void drain(got.body);
        last = new ThocError("aborted", `replica on ${id} changed while reading`);
      } catch (err) {
        this.noteFailure(id, err);
        if (ThocError.from(err).code === "data_loss") damaged.push(id);
        last = err;
      }
    }
    throw ThocError.from(last ?? new ThocError("unavailable", `no replica of ${bucket}/${key} could be read`), "unavailable");
  }

  /** Copies `version` from a good holder onto one whose copy is damaged (a replica store accepts the same version over a damaged body). */
  private async rewrite(bad: string, good: string, bucket: string, key: string, version: string): Promise<void> {
    const k = `${bad}\u0000${bucket}\u0000${key}`;
    if ((this.repairing.get(k) ?? "") >= version) return;
    this.repairing.set(k, version);
    try {
      const src = await this.opts.target(good).get(bucket, key);
      if (src.record.version !== version) { void drain(src.body); return; }
      await this.opts.target(bad).put(knownWrite(src.record, src.body));
      this.stats.readRepairs++;
      this.opts.log?.info({ node: bad, bucket, key, version }, "object store: damaged replica rewritten from another");
    } catch (err) {
      this.opts.log?.warn({ node: bad, bucket, key, err: ThocError.from(err).message }, "object store: rewriting a damaged replica failed");
    } finally {
      if (this.repairing.get(k) === version) this.repairing.delete(k);
    }
  }

  /** Pushes the newest version to every replier that is missing it or has an older one. */
  private async repair(bucket: string, key: string, replies: Map<string, ReplicaRecord | undefined>): Promise<void> {
    const newest = newestOf([...replies.values()]);
    if (!newest) return;
    const holders = [...replies].filter(([, rec]) => rec?.version === newest.version).map(([id]) => id);
    const stale = [...replies].filter(([, rec]) => !rec || rec.version < newest.version).map(([id]) => id);
    for (const id of stale) {
      const k = `${id}\u0000${bucket}\u0000${key}`;
      const pending = this.repairing.get(k);
      // Another read already repairs this node to this version (or a newer one).
      if (pending !== undefined && pending >= newest.version) continue;
      this.repairing.set(k, newest.version);
      try {
        if (!newest.tombstone && newest.size > REPAIR_AT_ONCE_MAX) {
          if (!(await this.defer(this.opts.readRepairDelayMs ?? 3000))) continue;
          const now = await this.opts.target(id).head(bucket, key);
          if (now && now.version >= newest.version) continue;
        }
        if (newest.tombstone) await this.opts.target(id).delete(bucket, key, newest.version);
        else {
          const src = await this.opts.target(holders[0]!).get(bucket, key);
          if (src.record.version !== newest.version) continue;
          await this.opts.target(id).put(knownWrite(src.record, src.body));
        }
        this.stats.readRepairs++;
        this.opts.log?.info({ node: id, bucket, key, version: newest.version }, "object store: read repair");
      } catch (err) {
        this.opts.log?.warn({ node: id, bucket, key, err: ThocError.from(err).message }, "object store: read repair failed");
      } finally {
        if (this.repairing.get(k) === newest.version) this.repairing.delete(k);
      }
    }
  }
}

/** Bodies announced at most this large go to replicas whole, in one request each (putSmall). */
export const SMALL_BODY_MAX = 64 << 10;

/** Bodies up to this size are repaired as soon as a read finds a stale replica; larger ones after readRepairDelayMs. */
const REPAIR_AT_ONCE_MAX = 1 << 20;

/** Releases a body we will not read (closes its stream). */
async function drain(body: AsyncIterable<Uint8Array>): Promise<void> {
  try { await body[Symbol.asyncIterator]().return?.(); } catch { /* nothing to release */ }
}

/** Runs fn, turning a synchronous throw (e.g. no address for a node) into a rejection. */
function attempt<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return fn();
  } catch (err) {
    return Promise.reject(err);
  }
}

/** Ends a replica's body with an error once the write was given up, so nothing commits. */
async function* abortable(body: AsyncIterable<Uint8Array>, signal: AbortSignal): AsyncIterable<Uint8Array> {
  const stop = () => new ThocError("cancelled", "write abandoned: quorum can no longer be reached");
  for await (const c of body) {
    if (signal.aborted) throw stop();
    yield c;
  }
  if (signal.aborted) throw stop();
}

export function newestOf(recs: (ReplicaRecord | undefined)[]): ReplicaRecord | undefined {
  let best: ReplicaRecord | undefined;
  for (const r of recs) if (r && (!best || r.version > best.version)) best = r;
  return best;
}
