/**
 * Conversions between the replica protocol's messages and this folder's types.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { ThocError } from "../../errors/index.js";
import type { ReplicaRecord as WireRecord, ReplicaRange, ObjectRingState, ReplicaRecordSchema, ObjectRingStateSchema } from "../../proto/index.js";
import type { PosRange, ReplicaRecord } from "./replica-store.js";
import type { RingStateData } from "./ring-state.js";

export function toWire(r: ReplicaRecord): MessageInitShape<typeof ReplicaRecordSchema> {
  return { bucket: r.bucket, key: r.key, version: r.version, tombstone: r.tombstone, size: BigInt(r.size), sha256: r.sha256, meta: r.meta };
}

export function safeNumber(v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ThocError("invalid_argument", `${what} ${v} is out of range`);
  return Number(v);
}

export function fromWire(w: WireRecord | undefined): ReplicaRecord {
  if (!w) throw new ThocError("invalid_argument", "replica record missing");
  return { bucket: w.bucket, key: w.key, version: w.version, tombstone: w.tombstone, size: safeNumber(w.size, "size"), sha256: w.sha256, meta: w.meta };
}

export function rangeToWire(r: PosRange): { start: bigint; end: bigint; whole: boolean } {
  return { start: BigInt(r.start), end: BigInt(r.end), whole: r.whole ?? false };
}

export function rangeFromWire(r: ReplicaRange | undefined): PosRange {
  if (!r) throw new ThocError("invalid_argument", "range missing");
  return { start: safeNumber(r.start, "range start"), end: safeNumber(r.end, "range end"), whole: r.whole };
}

export function ringToWire(s: RingStateData, digest: string): MessageInitShape<typeof ObjectRingStateSchema> {
  return {
    digest,
    members: s.members.map((m) => ({ nodeId: m.nodeId, name: m.name, weight: m.weight, addedAt: m.addedAt, updatedAt: m.updatedAt, removedAdd: m.removedAdd ?? "", removedAt: m.removedAt ?? "" })),
  };
}

export function ringFromWire(w: ObjectRingState): RingStateData {
  return {
    members: w.members.map((m) => ({
      nodeId: m.nodeId, name: m.name, weight: m.weight, addedAt: m.addedAt, updatedAt: m.updatedAt,
      ...(m.removedAdd ? { removedAdd: m.removedAdd } : {}),
      ...(m.removedAt ? { removedAt: m.removedAt } : {}),
    })),
  };
}
