/**
 * Gossip messages and their validation. Datagram bodies are a JSON array of
 * messages; a datagram with any malformed message is dropped whole, so a
 * peer with the key but a bug cannot half-apply state.
 */
import type { MemberState, NodeMeta } from "./types.js";

export type Msg =
  | { t: "ping"; seq: number; id: string; sus?: SuspectMsg }
  | { t: "ack"; seq: number }
  | { t: "nack"; seq: number }
  | { t: "preq"; seq: number; id: string; addr: string }
  | AliveMsg
  | SuspectMsg
  | DeadMsg;

export interface AliveMsg { t: "alive"; id: string; addr: string; inc: number; meta: NodeMeta }
export interface SuspectMsg { t: "suspect"; id: string; inc: number; from: string }
/** from === id means the node left on purpose. */
export interface DeadMsg { t: "dead"; id: string; inc: number; from: string }

/** One member in a push-pull full-state exchange. */
export interface StateEntry { id: string; addr: string; inc: number; state: MemberState; meta: NodeMeta }
export interface PushPull { join: boolean; members: StateEntry[] }

const isStr = (v: unknown, max = 256): v is string => typeof v === "string" && v.length > 0 && v.length <= max;
const isNat = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
const isNum = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v) && v >= 0;
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const ADDR = /^[^\s]{1,253}:\d{1,5}$/;

export function isMeta(v: unknown): v is NodeMeta {
  if (!isObj(v)) return false;
  if (typeof v.name !== "string" || typeof v.version !== "string") return false;
  for (const k of ["grpc", "s3", "gossip"]) if (typeof v[k] !== "string") return false;
  for (const k of ["cpus", "memBytes", "memFreeBytes", "diskBytes", "diskFreeBytes", "gpus"]) if (!isNum(v[k])) return false;
  if (v.tags !== undefined) {
    if (!isObj(v.tags)) return false;
    for (const x of Object.values(v.tags)) if (typeof x !== "string") return false;
  }
  return true;
}

function isSuspect(m: Record<string, unknown>): boolean {
  return m.t === "suspect" && isStr(m.id) && isNat(m.inc) && isStr(m.from);
}

export function isMsg(v: unknown): v is Msg {
  if (!isObj(v)) return false;
  switch (v.t) {
    case "ping": return isNat(v.seq) && isStr(v.id) && (v.sus === undefined || (isObj(v.sus) && isSuspect(v.sus)));
    case "ack": case "nack": return isNat(v.seq);
    case "preq": return isNat(v.seq) && isStr(v.id) && isStr(v.addr) && ADDR.test(v.addr);
    case "alive": return isStr(v.id) && isStr(v.addr) && ADDR.test(v.addr) && isNat(v.inc) && isMeta(v.meta);
    case "suspect": return isSuspect(v);
    case "dead": return isStr(v.id) && isNat(v.inc) && isStr(v.from);
    default: return false;
  }
}

const STATES = new Set(["alive", "suspect", "dead", "left"]);

/** Parses a datagram body; undefined when anything in it is malformed. */
export function decodePacket(body: Buffer): Msg[] | undefined {
  let v: unknown;
  try { v = JSON.parse(body.toString("utf8")); } catch { return undefined; }
  if (!Array.isArray(v) || v.length === 0 || v.length > 256) return undefined;
  return v.every(isMsg) ? (v as Msg[]) : undefined;
}

export function decodePushPull(body: Buffer): PushPull | undefined {
  let v: unknown;
  try { v = JSON.parse(body.toString("utf8")); } catch { return undefined; }
  if (!isObj(v) || typeof v.join !== "boolean" || !Array.isArray(v.members) || v.members.length > 100_000) return undefined;
  for (const e of v.members) {
    if (!isObj(e) || !isStr(e.id) || !isStr(e.addr) || !ADDR.test(e.addr) || !isNat(e.inc) || !STATES.has(e.state as string) || !isMeta(e.meta)) return undefined;
  }
  return v as unknown as PushPull;
}
