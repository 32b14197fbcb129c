/**
 * Turns a protobuf-es service descriptor into a grpc-js service definition and
 * typed, promise/async-iterable handlers into grpc-js handlers, so a service
 * is declared once, in .proto. Errors thrown by handlers go through
 * ThocError.from() and reach the client as a gRPC status with a readable
 * message; internal errors are logged, their text is not sent.
 */
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, ScalarType, toBinary, type DescMessage, type DescMethod, type DescService, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { ThocError } from "../errors/index.js";
import { callerFromCertificate, type Caller } from "./identity.js";
import { localCaller } from "./local.js";
import { pooledRandomBytes } from "./random.js";

export interface CallContext {
  /** Aborted when the client cancels or the deadline passes. */
  readonly signal: AbortSignal;
  readonly metadata: grpc.Metadata;
  readonly peer: string;
  /** Who is calling, as the transport proved it (rpc/identity.ts). */
  readonly caller: Caller;
  /** The client's x-request-id when it sent a sane one, else a fresh one: ties a call to its log and audit lines. */
  readonly requestId: string;
  /** Milliseconds left before the client's deadline (Infinity when none). */
  timeRemaining(): number;
}

type In<M extends Pick<DescMethod, "input">> = MessageShape<M["input"]>;
type Out<M extends Pick<DescMethod, "output">> = MessageInitShape<M["output"]>;

export type MethodImpl<M extends Pick<DescMethod, "input" | "output" | "methodKind">> =
  M["methodKind"] extends "unary" ? (req: In<M>, ctx: CallContext) => Promise<Out<M>>
  : M["methodKind"] extends "server_streaming" ? (req: In<M>, ctx: CallContext) => AsyncIterable<Out<M>>
  : M["methodKind"] extends "client_streaming" ? (reqs: AsyncIterable<In<M>>, ctx: CallContext) => Promise<Out<M>>
  : (reqs: AsyncIterable<In<M>>, ctx: CallContext) => AsyncIterable<Out<M>>;

/** An implementation of every method of a generated service. */
export type ServiceImpl<T extends GenServiceMethods> = { [K in keyof T]: MethodImpl<T[K]> };

/** Observes every finished call (metrics, logs). */
export type CallObserver = (method: string, code: grpc.status, seconds: number, err?: ThocError) => void;

/** A finished call as the server's `finished` hook sees it. */
export interface FinishedCall {
  /** "/pkg.Service/Method". */
  method: string;
  ctx: CallContext;
  /** The request (a stream's first message; undefined when none arrived or the call was refused before reading). */
  request: unknown;
  /** A unary or client-streaming call's response, when it succeeded. */
  response?: unknown;
  code: grpc.status;
  error?: ThocError;
}

/** What the server runs around every handler, streams included. */
export interface CallHooks {
  /** Throws (a ThocError) to refuse a call before its handler runs. `method` is "/pkg.Service/Method". */
  authorize?(method: string, ctx: CallContext): void;
  /** After every call, refused ones included (audit). Must not throw. */
  finished?(call: FinishedCall): void;
  /** Whether `finished` wants a request stream's first message for this method (default yes); no keeps bulk streams, like replica bodies, unwrapped. */
  wantsRequest?(method: string): boolean;
  /** Whether the TCP listener speaks TLS: an unverified TLS caller is then anonymous over "tls", not "insecure". */
  secure?(): boolean;
}

/**
 * Encodes messages of one type. Every byte of an object body crosses here
 * (replica streams send it as `oneof { bytes chunk }` messages), and copies
 * are what cost: protobuf-es concatenates its output (one copy), and
 * Buffer.from(Uint8Array) copied it again, each a fresh allocation whose
 * external-memory pressure made V8 collect garbage for a third of a
 * replicated PUT's CPU. So the result is wrapped, not copied, and a message
 * that is only a bytes member of its oneof is framed by hand with one copy.
 */
export function serializer(schema: DescMessage): (msg: unknown) => Buffer {
  const only = schema.members.length === 1 && schema.members[0]!.kind === "oneof" ? schema.members[0]! : undefined;
  const bytesCases = new Map<string, number>();
  if (only?.kind === "oneof") {
    for (const f of only.fields) if (f.fieldKind === "scalar" && f.scalar === ScalarType.BYTES && f.number < 16) bytesCases.set(f.localName, f.number);
  }
  return (msg) => {
    // Already encoded (a client that signed the bytes it sends: rpc/client.ts); protobuf-es messages are never Uint8Arrays.
    if (msg instanceof Uint8Array) return Buffer.isBuffer(msg) ? msg : Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength);
    if (only && bytesCases.size) {
      const part = (msg as Record<string, { case?: string; value?: unknown } | undefined>)[only.localName];
      const no = part?.case === undefined ? undefined : bytesCases.get(part.case);
      if (no !== undefined && part!.value instanceof Uint8Array) return frameBytes(no, part!.value);
    }
    const u8 = toBinary(schema, msg as MessageShape<DescMessage>);
    return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
  };
}

/** Field `no` (< 16: a one-byte tag) of wire type 2 holding data. */
function frameBytes(no: number, data: Uint8Array): Buffer {
  let n = data.byteLength;
  const len: number[] = [];
  do {
    len.push(n > 0x7f ? (n & 0x7f) | 0x80 : n);
    n = Math.floor(n / 128);
  } while (n > 0);
  const out = Buffer.allocUnsafe(1 + len.length + data.byteLength);
  out[0] = (no << 3) | 2;
  for (let i = 0; i < len.length; i++) out[1 + i] = len[i]!;
  out.set(data, 1 + len.length);
  return out;
}

/** The bytes a single request message (unary, server streaming) arrived as; see requestBytes(). */
const received = new WeakMap<object, Uint8Array>();

/**
 * The wire bytes of a unary or server-streaming call's request as this server
 * received them, for checks that must cover exactly what was sent (peer
 * authentication binds a call to its request's sha256). Streamed requests are
 * not kept: their bodies can be gigabytes.
 */
export function requestBytes(msg: unknown): Uint8Array | undefined {
  return typeof msg === "object" && msg !== null ? received.get(msg) : undefined;
}

export function serviceDefinition(svc: DescService): grpc.ServiceDefinition {
  const def: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const m of svc.methods) {
    const single = m.methodKind === "unary" || m.methodKind === "server_streaming";
    def[m.localName] = {
      path: `/${svc.typeName}/${m.name}`,
      requestStream: m.methodKind === "client_streaming" || m.methodKind === "bidi_streaming",
      responseStream: m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming",
      requestSerialize: serializer(m.input),
      requestDeserialize: single
        ? (buf: Buffer) => { const msg = fromBinary(m.input, buf); received.set(msg, buf); return msg; }
        : (buf: Buffer) => fromBinary(m.input, buf),
      responseSerialize: serializer(m.output),
      responseDeserialize: (buf: Buffer) => fromBinary(m.output, buf),
      originalName: m.name,
    };
  }
  return def as grpc.ServiceDefinition;
}

type AnyCall = grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerReadableStream<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>;

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/**
 * The abort reason of a cancelled call, without a stack: grpc-js emits
 * "cancelled" when any call's stream closes, finished ones included, so this
 * runs once per call (10-40 a second on an idle cluster: scheduler
 * heartbeats), and the stack of an event from grpc-js's internals says nothing.
 */
function cancelledByClient(): ThocError {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try { return new ThocError("cancelled", "call cancelled by client"); } finally { Error.stackTraceLimit = limit; }
}

function contextOf(call: AnyCall, secure = false): CallContext {
  const ac = new AbortController();
  (call as grpc.ServerUnaryCall<unknown, unknown>).on("cancelled", () => ac.abort(cancelledByClient()));
  const deadline = call.getDeadline();
  const deadlineMs = deadline instanceof Date ? deadline.getTime() : typeof deadline === "number" ? deadline : Infinity;
  return {
    signal: ac.signal,
    metadata: call.metadata,
    peer: call.getPeer(),
    caller: callerOf(call, secure),
    requestId: requestIdOf(call.metadata),
    timeRemaining: () => (Number.isFinite(deadlineMs) ? deadlineMs - Date.now() : Infinity),
  };
}

/**
 * The transport's identity for a call. grpc-js reports a peer certificate only
 * when the TLS layer verified it against the server's CA.
 */
export function callerOf(call: Pick<AnyCall, "getAuthContext" | "getPeer">, secure = false): Caller {
  const local = localCaller(call.getPeer());
  if (local) return local;
  const auth = call.getAuthContext();
  if (auth?.sslPeerCertificate) return callerFromCertificate(auth.sslPeerCertificate);
  // grpc-js reports nothing at all for a TLS connection whose client sent no (valid) certificate.
  return { kind: "anonymous", transport: auth?.transportSecurityType === "ssl" || secure ? "tls" : "insecure" };
}

function requestIdOf(md: grpc.Metadata): string {
  const v = md.get("x-request-id")[0];
  return typeof v === "string" && REQUEST_ID.test(v) ? v : pooledRandomBytes(8).toString("hex");
}

export function toServiceError(err: unknown, onInternal?: (e: ThocError) => void): Partial<grpc.StatusObject> {
  const e = ThocError.from(err);
  if (e.code === "internal") onInternal?.(e);
  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(e.details)) {
    if (v !== undefined && /^[a-z0-9_-]+$/.test(k)) metadata.set(`thoc-${k}`, String(v));
  }
  const details = e.code === "internal" ? `internal error: ${e.message}` : e.message;
  return { code: e.grpcStatus, details, metadata };
}

/**
 * Reads a call's request stream. Not `for await (… of call)`: a Readable's
 * default iterator destroys the stream when it ends, which for a duplex call
 * also kills the response side before the status is sent.
 */
async function* readRequests<T>(call: NodeJS.ReadableStream & { iterator(o: { destroyOnReturn: boolean }): AsyncIterable<unknown> }): AsyncIterable<T> {
  for await (const m of call.iterator({ destroyOnReturn: false })) yield m as T;
}

/** grpc-js handlers for a typed implementation. */
export function serviceHandlers<T extends GenServiceMethods>(
  svc: GenService<T>,
  impl: ServiceImpl<T>,
  observe?: CallObserver,
  onInternal?: (e: ThocError) => void,
  hooks: CallHooks = {},
): grpc.UntypedServiceImplementation {
  const handlers: grpc.UntypedServiceImplementation = {};
  for (const m of (svc as DescService).methods) {
    const fn = (impl as Record<string, unknown>)[m.localName] as (...a: unknown[]) => unknown;
    if (typeof fn !== "function") throw new Error(`${svc.typeName}.${m.name} has no implementation`);
    const name = `${svc.typeName}/${m.name}`;
    const path = `/${name}`;
    const done = (start: bigint, ctx: CallContext, request: unknown, err?: unknown, response?: unknown) => {
      const secs = Number(process.hrtime.bigint() - start) / 1e9;
      const e = err === undefined ? undefined : ThocError.from(err);
      const code = e ? e.grpcStatus : grpc.status.OK;
      observe?.(name, code, secs, e);
      if (hooks.finished) {
        try { hooks.finished({ method: path, ctx, request, response, code, error: e }); } catch { /* a hook never fails a call */ }
      }
    };
    const admit = (call: AnyCall): CallContext => contextOf(call, hooks.secure?.() ?? false);
    const check = (ctx: CallContext) => hooks.authorize?.(path, ctx);
    const remember = hooks.finished !== undefined && (hooks.wantsRequest?.(path) ?? true);
    /** A request stream that remembers its first message, for the finished hook. */
    const firstOf = (call: AnyCall): { box: { first?: unknown }; reqs: AsyncIterable<unknown> } => {
      const box: { first?: unknown } = {};
      if (!remember) return { box, reqs: readRequests(call as never) };
      async function* reqs() {
        for await (const r of readRequests(call as never)) {
          if (!("first" in box)) box.first = r;
          yield r;
        }
      }
      return { box, reqs: reqs() };
    };
    const out = (v: unknown) => create(m.output, v as MessageInitShape<DescMessage>);
    switch (m.methodKind) {
      case "unary":
        handlers[m.localName] = ((call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
          const start = process.hrtime.bigint();
          const ctx = admit(call);
          Promise.resolve()
            .then(() => { check(ctx); return fn.call(impl, call.request, ctx); })
            .then((res) => { done(start, ctx, call.request, undefined, res); cb(null, out(res)); },
              (err) => { done(start, ctx, call.request, err); cb(toServiceError(err, onInternal)); });
        }) as grpc.handleUnaryCall<unknown, unknown>;
        break;
      case "client_streaming":
        handlers[m.localName] = ((call: grpc.ServerReadableStream<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
          const start = process.hrtime.bigint();
          const ctx = admit(call);
          const { box, reqs } = firstOf(call);
          Promise.resolve()
            .then(() => { check(ctx); return fn.call(impl, reqs, ctx); })
            .then((res) => { done(start, ctx, box.first, undefined, res); cb(null, out(res)); },
              (err) => { done(start, ctx, box.first, err); cb(toServiceError(err, onInternal)); });
        }) as grpc.handleClientStreamingCall<unknown, unknown>;
        break;
      case "server_streaming":
      case "bidi_streaming":
        handlers[m.localName] = ((call: grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>) => {
          const start = process.hrtime.bigint();
          const ctx = admit(call);
          const streaming = m.methodKind === "bidi_streaming" ? firstOf(call) : undefined;
          const arg = streaming ? streaming.reqs : (call as grpc.ServerWritableStream<unknown, unknown>).request;
          const request = () => (streaming ? streaming.box.first : arg);
          (async () => {
            check(ctx);
            const it = fn.call(impl, arg, ctx) as AsyncIterable<unknown>;
            for await (const item of it) {
              if (ctx.signal.aborted) break;
              // Respect back-pressure: wait for drain when the buffer is full.
              if (!call.write(out(item))) await new Promise<void>((r) => { call.once("drain", r); ctx.signal.addEventListener("abort", () => r(), { once: true }); });
            }
          })().then(() => { done(start, ctx, request()); call.end(); },
            (err) => { done(start, ctx, request(), err); call.emit("error", toServiceError(err, onInternal)); });
        }) as grpc.handleServerStreamingCall<unknown, unknown>;
        break;
    }
  }
  return handlers;
}

/** The implementation type of a generated service constant: `ImplOf<typeof NodeService>`. */
export type ImplOf<S> = S extends GenService<infer T> ? ServiceImpl<T> : never;
