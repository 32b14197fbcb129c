/**
 * The fault-injection tests' workload and checker (objectstore-faults,
 * objectstore-partition): concurrent writers overwrite and delete a small set
 * of keys through whichever agents are live, with self-verifying bodies, and
 * read keys back; every operation is recorded with its wall-clock interval.
 *
 * The checker's rule rests on how versions are minted: the coordinator mints
 * a write's HLC version after the request arrived and before it answers, from
 * the machine's one wall clock (every agent runs here), so a write that
 * STARTED more than MARGIN ms after another one ENDED has the newer version.
 * An acknowledged write is on W preferred nodes and every read asks R with
 * R + W > N, so:
 *  - a read may return an op only if no write acknowledged before the read
 *    started is certainly newer than it (no stale reads, not only at the end);
 *  - at the end, the content must be one of the ops no acknowledged write is
 *    certainly newer than: the last acknowledged ones, or writes attempted
 *    after them whose fate the client never learned or that failed (a failed
 *    write may have committed on one replica and spread: docs/objectstore.md).
 * A failed write's version was minted before its end, except when the client
 * gave up without an answer while the coordinator lived on (a timeout): then
 * it could be minted later, and nothing can be newer for sure ("unbounded").
 */
import { createHash, randomBytes } from "node:crypto";
import * as s3 from "@aws-sdk/client-s3";
import { ClusterService } from "../proto/index.js";
import { createClient } from "../rpc/index.js";
import type { AgentProcess } from "./harness.js";
import { waitFor } from "./harness.js";

/** Clock slack between "this op ended" and "that op started" for the version order to be certain. */
export const MARGIN = 5;

export interface Op {
  id: string;
  key: string;
  kind: "put" | "del";
  via: string;
  start: number;
  end?: number;
  acked?: boolean;
  /** Latest time its version can have been minted (Infinity when unknown). */
  bound: number;
  err?: string;
}

export interface ReadRec { key: string; via: string; start: number; end: number; got: string /* op id or "404" */ }

export function makeBody(key: string, id: string, size: number): Buffer {
  const payload = randomBytes(size);
  const head = `thoc-chaos key=${encodeURIComponent(key)} id=${id} size=${size} sha256=${createHash("sha256").update(payload).digest("hex")}\n`;
  return Buffer.concat([Buffer.from(head), payload]);
}

/** The op id a body claims, or an error saying why it is torn or corrupt. */
export function verifyBody(key: string, body: Uint8Array): { id: string } | { bad: string } {
  const buf = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const nl = buf.indexOf(10);
  if (nl < 0 || nl > 400) return { bad: `no header line (${buf.length} bytes)` };
  const m = /^thoc-chaos key=(\S+) id=(\S+) size=(\d+) sha256=([0-9a-f]{64})$/.exec(buf.subarray(0, nl).toString());
  if (!m) return { bad: `malformed header ${JSON.stringify(buf.subarray(0, Math.min(nl, 120)).toString())}` };
  const payload = buf.subarray(nl + 1);
  if (decodeURIComponent(m[1]!) !== key) return { bad: `body of key ${decodeURIComponent(m[1]!)} returned for ${key}` };
  if (payload.length !== Number(m[3])) return { bad: `torn: ${payload.length} of ${m[3]} payload bytes (${m[2]})` };
  if (createHash("sha256").update(payload).digest("hex") !== m[4]) return { bad: `corrupt: sha256 mismatch (${m[2]}, ${payload.length} bytes)` };
  return { id: m[2]! };
}

export class History {
  readonly ops = new Map<string, Op[]>();
  readonly byId = new Map<string, Op>();
  readonly reads: ReadRec[] = [];
  /** Successful GETs whose body did not verify: must stay empty. */
  readonly torn: string[] = [];

  constructor(readonly keys: string[]) {
    for (const k of keys) this.ops.set(k, []);
  }

  begin(key: string, kind: Op["kind"], id: string, via: string): Op {
    const op: Op = { id, key, kind, via, start: Date.now(), bound: Infinity };
    this.ops.get(key)!.push(op);
    this.byId.set(id, op);
    return op;
  }

  /** True when some op acknowledged before `before` is certainly newer than op (or than "never written" when op is undefined). */
  private superseded(key: string, op: Op | undefined, before = Infinity): Op | undefined {
    const bound = op ? op.bound : -Infinity;
    return this.ops.get(key)!.find((y) => y.acked && y.end! < before && y.start > bound + MARGIN);
  }

  /** What a read of `key` may return if it started at `at`: op ids, and whether 404 is allowed. */
  allowed(key: string, at = Infinity): { ids: Set<string>; absent: boolean } {
    const ids = new Set<string>();
    let absent = !this.superseded(key, undefined, at);
    for (const op of this.ops.get(key)!) {
      if (op.start >= at && at !== Infinity) continue;
      if (this.superseded(key, op, at)) continue;
      if (op.kind === "put") ids.add(op.id);
      else absent = true;
    }
    return { ids, absent };
  }

  /** Reads that returned something older than a write acknowledged before they started. */
  staleReads(): string[] {
    const out: string[] = [];
    for (const r of this.reads) {
      let ok: boolean;
      if (r.got === "404") {
        ok = !this.superseded(r.key, undefined, r.start)
          || this.ops.get(r.key)!.some((d) => d.kind === "del" && d.start < r.end && !this.superseded(r.key, d, r.start));
      } else {
        const f = this.byId.get(r.got);
        ok = f !== undefined && f.key === r.key && f.kind === "put" && f.start < r.end && !this.superseded(r.key, f, r.start);
      }
      if (!ok) {
        const a = this.allowed(r.key, r.start);
        out.push(`${r.key} via ${r.via} read [${r.start}-${r.end}]: got ${r.got}; newer acked before it: ${[...a.ids].join(",") || "-"}${a.absent ? " or 404" : ""}; history: ${this.describe(r.key, 10)}`);
      }
    }
    return out;
  }

  /** The key's recent history, for failure messages. */
  describe(key: string, last = 6): string {
    return this.ops.get(key)!.slice(-last).map((o) => `${o.kind} ${o.id} [${o.start}-${o.end ?? "?"}] ${o.acked ? "acked" : `failed${o.bound === Infinity ? "(unbounded)" : ""}`}`).join("; ");
  }

  figures(): { acked: number; failed: number; unbounded: number; puts: number; deletes: number; reads: number; torn: number } {
    const all = [...this.byId.values()];
    return {
      acked: all.filter((o) => o.acked).length, failed: all.filter((o) => o.acked === false).length,
      unbounded: all.filter((o) => o.acked === false && o.bound === Infinity).length,
      puts: all.filter((o) => o.kind === "put").length, deletes: all.filter((o) => o.kind === "del").length,
      reads: this.reads.length, torn: this.torn.length,
    };
  }
}

export interface Target { name: string; client: s3.S3Client }

export interface WorkloadOptions {
  bucket: string;
  history: History;
  writers: number;
  /** The agents to send to now (the live ones). */
  targets: () => Target[];
  /** True when the agent named was killed at some time in [from, to]: no version can be minted after its death. */
  killedDuring?: (name: string, from: number, to: number) => boolean;
  deleteRatio?: number;
  readRatio?: number;
}

export interface ErrorTally { [what: string]: number }

function errorKind(err: unknown): { what: string; responded: boolean } {
  const e = err as { name?: string; code?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const status = e.$metadata?.httpStatusCode;
  if (status) return { what: `${status} ${e.name ?? ""}`.trim(), responded: true };
  return { what: `network ${e.code ?? e.name ?? "error"}`, responded: /ECONNREFUSED/.test(`${e.code} ${e.message}`) };
}

function pickSize(): number {
  const r = Math.random();
  if (r < 0.7) return Math.floor(Math.random() * 16 * 1024);
  if (r < 0.95) return 16 * 1024 + Math.floor(Math.random() * 240 * 1024);
  return 256 * 1024 + Math.floor(Math.random() * 1280 * 1024);
}

/** Starts the writers; stop() waits for their last operation. */
export function startWorkload(o: WorkloadOptions): { stop(): Promise<void>; errors: ErrorTally; samples: Map<string, string> } {
  const h = o.history;
  const errors: ErrorTally = {};
  /** The first message of each kind of error, for the log. */
  const samples = new Map<string, string>();
  let stopping = false;
  const tally = (k: string, err?: unknown) => {
    errors[k] = (errors[k] ?? 0) + 1;
    if (!samples.has(k)) samples.set(k, `${(err as Error)?.message ?? ""}`.slice(0, 300));
  };
  const writer = async (w: number) => {
    let seq = 0;
    while (!stopping) {
      const targets = o.targets();
      if (!targets.length) { await new Promise((r) => setTimeout(r, 100)); continue; }
      const t = targets[Math.floor(Math.random() * targets.length)]!;
      const key = h.keys[Math.floor(Math.random() * h.keys.length)]!;
      const r = Math.random();
      if (r < (o.readRatio ?? 0.3)) {
        const start = Date.now();
        try {
          const got = await t.client.send(new s3.GetObjectCommand({ Bucket: o.bucket, Key: key }));
          const body = await got.Body!.transformToByteArray();
          const end = Date.now();
          const v = verifyBody(key, body);
          if ("bad" in v) h.torn.push(`GET ${key} via ${t.name}: ${v.bad}`);
          else h.reads.push({ key, via: t.name, start, end, got: v.id });
        } catch (err) {
          const k = errorKind(err);
          if (k.what.startsWith("404")) h.reads.push({ key, via: t.name, start, end: Date.now(), got: "404" });
          else tally(`GET ${k.what}`, err);
        }
        continue;
      }
      const kind = r < (o.readRatio ?? 0.3) + (o.deleteRatio ?? 0.1) ? "del" : "put";
      const id = `w${w}.${++seq}`;
      const op = h.begin(key, kind, id, t.name);
      try {
        if (kind === "put") await t.client.send(new s3.PutObjectCommand({ Bucket: o.bucket, Key: key, Body: makeBody(key, id, pickSize()) }));
        else await t.client.send(new s3.DeleteObjectCommand({ Bucket: o.bucket, Key: key }));
        op.end = Date.now();
        op.acked = true;
        op.bound = op.end;
      } catch (err) {
        op.end = Date.now();
        op.acked = false;
        const k = errorKind(err);
        op.err = k.what;
        tally(`${kind === "put" ? "PUT" : "DELETE"} ${k.what}`, err);
        // Answered, refused, or its coordinator died: the version (if any) was minted before the end.
        if (k.responded || o.killedDuring?.(t.name, op.start - 1000, op.end)) op.bound = op.end;
      }
    }
  };
  const runs = Array.from({ length: o.writers }, (_, i) => writer(i + 1));
  return { errors, samples, stop: async () => { stopping = true; await Promise.all(runs); } };
}

/** One read of a key for the final checks: the op id, "404", or an error text. */
export async function readKey(c: s3.S3Client, bucket: string, key: string): Promise<string> {
  try {
    const got = await c.send(new s3.GetObjectCommand({ Bucket: bucket, Key: key }));
    const v = verifyBody(key, await got.Body!.transformToByteArray());
    return "bad" in v ? `BAD ${v.bad}` : v.id;
  } catch (err) {
    const k = errorKind(err);
    return k.what.startsWith("404") ? "404" : `ERR ${k.what}`;
  }
}

/** Problems with final reads: values outside the allowed set. */
export function checkFinal(h: History, key: string, got: string, via: string): string | undefined {
  const a = h.allowed(key);
  if (got === "404" ? a.absent : a.ids.has(got)) return undefined;
  return `${key} via ${via}: ${got}; allowed ${[...a.ids].join(",") || "-"}${a.absent ? " or 404" : ""}; history: ${h.describe(key)}`;
}

/**
 * Reads every key through every target: problems are values outside the
 * allowed set or targets disagreeing with the first one; final is what each
 * key read as (for later comparisons).
 */
export async function finalReads(h: History, bucket: string, keys: string[], targets: Target[]): Promise<{ problems: string[]; final: Map<string, string> }> {
  const problems: string[] = [];
  const final = new Map<string, string>();
  for (const k of keys) {
    for (const t of targets) {
      const got = await readKey(t.client, bucket, k);
      const bad = checkFinal(h, k, got, t.name);
      if (bad) problems.push(bad);
      if (!final.has(k)) final.set(k, got);
      else if (final.get(k) !== got) problems.push(`${k}: ${t.name} reads ${got}, ${targets[0]!.name} read ${final.get(k)}`);
    }
  }
  return { problems, final };
}

/** An agent's ring view over gRPC (no CLI process: polling it is cheap). */
export async function ringView(a: AgentProcess): Promise<{ up: string[]; down: string[]; pendingHints: number }> {
  const c = createClient(ClusterService, a.clientAddress, { defaultTimeoutMs: 5000 });
  try {
    const r = await c.getRing({});
    return {
      up: r.nodes.filter((n) => n.state === "up").map((n) => n.name).sort(),
      down: r.nodes.filter((n) => n.state === "down").map((n) => n.name).sort(),
      pendingHints: Number(r.pendingHints),
    };
  } finally {
    c.close();
  }
}

/** Waits until each agent's ring shows exactly `up` up. */
export async function waitUp(agents: AgentProcess[], up: string[], timeoutMs = 60_000): Promise<void> {
  const want = JSON.stringify([...up].sort());
  await Promise.all(agents.map((a) => waitFor(`${a.name} sees ${up.join(",")} up`, async () => JSON.stringify((await ringView(a)).up) === want, timeoutMs, 200)));
}

/** The distinct causes of the agents' 5xx answers ("s3 request failed" log lines), most frequent first. */
export function serverFailures(agents: AgentProcess[], top = 4): string[] {
  const n = new Map<string, number>();
  for (const a of agents) for (const l of a.logs()) {
    if (l.msg !== "s3 request failed") continue;
    const err = l.err as { message?: string } | undefined;
    const m = `${l.op} ${(err?.message ?? "?").replace(/[0-9a-f]{16,}/g, "…").replace(/\bk\d+[^:;]*|\bp\d+/g, "<key>").slice(0, 240)}`;
    n.set(m, (n.get(m) ?? 0) + 1);
  }
  return [...n].sort((x, y) => y[1] - x[1]).slice(0, top).map(([m, c]) => `${c}× ${m}`);
}
