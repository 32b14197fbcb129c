/**
 * The audit trail: every mutating operator or admin call (a method whose role
 * is operator or admin, and joins), refused ones included, as one JSON line in
 * <dataDir>/audit.log and one "audit" event on EventService.WatchEvents. Peer traffic
 * and reads are not audited: they would drown the trail.
 *
 * A record names who (the caller), what (method, and the names and ids it was
 * about), the outcome and the request id. What a record may carry of a
 * request is an allowlist of field names (TARGET_FIELDS), so a secret (an S3
 * secret key, a cloud-init password, a join token, key material) can never
 * reach it, whatever message a future method takes.
 *
 * The file is 0600 (it tells who did what, and when) and rotates by size:
 * audit.log -> audit.log.1 -> ... -> audit.log.N, the oldest dropped.
 */
import { closeSync, fstatSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { GrpcStatus, describeCaller, type Caller, type FinishedCall } from "../rpc/index.js";
import { ROLE_TABLE, type Need } from "./roles.js";

export interface AuditRecord {
  time: string;
  timeMs: number;
  node: string;
  who: string;
  caller: Record<string, unknown>;
  method: string;
  role: string;
  target: Record<string, string>;
  outcome: string;
  code: number;
  message?: string;
  requestId: string;
}

/** Request and response fields that name what a call was about. Only these reach a record. */
const TARGET_FIELDS = new Set(["name", "vm", "image", "accessKeyId", "owner", "node", "nodeId", "id", "role", "serial", "force"]);

/** name/id fields of a message, nested ones as dotted paths (spec.name), at most two levels down. */
export function targetOf(...msgs: unknown[]): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (v: unknown, prefix: string, depth: number) => {
    if (typeof v !== "object" || v === null || Array.isArray(v) || v instanceof Uint8Array) return;
    for (const [k, x] of Object.entries(v)) {
      if (k.startsWith("$")) continue;
      const key = prefix ? `${prefix}.${k}` : k;
      if ((typeof x === "string" && x) || typeof x === "boolean" && x) {
        if (TARGET_FIELDS.has(k) && !(key in out)) out[key] = String(x);
      } else if (depth < 2) walk(x, key, depth + 1);
    }
  };
  for (const m of msgs) walk(m, "", 0);
  return out;
}

/** Whether a call of `method` is audited. */
export function isAudited(method: string, table: ReadonlyMap<string, Need> = ROLE_TABLE): boolean {
  const need = table.get(method);
  return need === undefined || need === "operator" || need === "admin" || method === "/thoc.node.v1.PkiService/Join";
}

function callerFields(c: Caller): Record<string, unknown> {
  if (c.kind === "local") return { kind: c.kind, uid: c.uid, gid: c.gid, pid: c.pid };
  return { ...c };
}

/** For a VM call another node routed here: whom that node served (only a node certificate may say so). */
function onBehalfOf(call: FinishedCall): string | undefined {
  if (call.ctx.caller.kind !== "node") return undefined;
  const v = call.ctx.metadata.get("x-thoc-on-behalf-of")[0];
  return typeof v === "string" && v ? v.replace(/[\u0000-\u001f\u007f]/g, "?").slice(0, 200) : undefined;
}

export function auditRecord(call: FinishedCall, node: string, now = Date.now()): AuditRecord {
  const ok = call.code === GrpcStatus.OK;
  const forWhom = onBehalfOf(call);
  return {
    time: new Date(now).toISOString(),
    timeMs: now,
    node,
    who: describeCaller(call.ctx.caller) + (forWhom ? ` for ${forWhom}` : ""),
    caller: callerFields(call.ctx.caller),
    method: call.method,
    role: ROLE_TABLE.get(call.method) ?? "none",
    target: targetOf(call.request, ok ? call.response : undefined),
    outcome: GrpcStatus[call.code] ?? String(call.code),
    code: call.code,
    ...(ok || !call.error ? {} : { message: call.error.message }),
    requestId: call.ctx.requestId,
  };
}

export interface AuditFileOptions { maxBytes: number; files: number }

/** audit.log: JSON lines, 0600, rotated by size. Writes are synchronous: a record is on disk when the call's status goes out. */
export class AuditFile {
  private fd?: number;
  private size = 0;

  constructor(readonly file: string, private readonly opts: AuditFileOptions) {
    this.open();
  }

  private open(): void {
    this.fd = openSync(this.file, "a", 0o600);
    this.size = fstatSync(this.fd).size;
  }

  write(rec: AuditRecord): void {
    const line = Buffer.from(JSON.stringify(rec) + "\n");
    if (this.size > 0 && this.size + line.length > this.opts.maxBytes) this.rotate();
    writeSync(this.fd!, line);
    this.size += line.length;
  }

  private rotate(): void {
    this.close();
    const n = this.opts.files;
    if (n === 0) rmSync(this.file, { force: true });
    else {
      rmSync(`${this.file}.${n}`, { force: true });
      for (let i = n - 1; i >= 1; i--) {
        try { renameSync(`${this.file}.${i}`, `${this.file}.${i + 1}`); } catch { /* not there yet */ }
      }
      renameSync(this.file, `${this.file}.1`);
    }
    this.open();
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** The RpcServer `finished` hook: audited calls to the file and the bus. */
export function auditor(o: { node: string; file?: AuditFile; bus: { audit(r: AuditRecord): void }; onError(err: unknown): void }): (call: FinishedCall) => void {
  return (call) => {
    if (!isAudited(call.method)) return;
    const rec = auditRecord(call, o.node);
    try { o.file?.write(rec); } catch (err) { o.onError(err); }
    o.bus.audit(rec);
  };
}
