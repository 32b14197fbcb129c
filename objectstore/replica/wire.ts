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

/** One record in a packed ListBucket answer (ListReplicaRangeResponse.packed): [key after the prefix, version, tombstone, size, sha256, meta]. */
type PackedRow = [string, string, boolean, number, string, string];

/** Records (all under `prefix`) as one packed message: UTF-8 JSON, encoded natively. */
export function packRecords(recs: readonly ReplicaRecord[], prefix: string): Uint8Array {
  const rows: PackedRow[] = recs.map((r) => [r.key.startsWith(prefix) ? r.key.slice(prefix.length) : r.key, r.version, r.tombstone, r.size, r.sha256, r.meta]);
  return Buffer.from(JSON.stringify(rows), "utf8");
}

/** A packed message's records, checked field by field (a peer's bytes are input like any other). */
export function unpackRecords(packed: Uint8Array, bucket: string, prefix: string): ReplicaRecord[] {
  let rows: unknown;
  try {
    rows = JSON.parse(Buffer.from(packed.buffer, packed.byteOffset, packed.byteLength).toString("utf8"));
  } catch {
    throw new ThocError("invalid_argument", "packed replica records are not JSON");
  }
  if (!Array.isArray(rows)) throw new ThocError("invalid_argument", "packed replica records are not an array");
  return rows.map((x: unknown, i) => {
    const r = x as PackedRow;
    if (!Array.isArray(r) || r.length !== 6 || typeof r[0] !== "string" || typeof r[1] !== "string" || typeof r[2] !== "boolean"
      || !Number.isSafeInteger(r[3]) || r[3] < 0 || typeof r[4] !== "string" || typeof r[5] !== "string") {
      throw new ThocError("invalid_argument", `packed replica record ${i} is malformed`);
    }
    return { bucket, key: prefix + r[0], version: r[1], tombstone: r[2], size: r[3], sha256: r[4], meta: r[5] };
  });
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
