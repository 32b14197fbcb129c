/**
 * Typed gRPC clients from protobuf-es service descriptors: unary calls return
 * promises, streams are async iterables, and every failure is a ThocError with
 * the server's status and message.
 */
import * as grpc from "@grpc/grpc-js";
import { create, type DescMessage, type DescMethod, type DescService, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { ThocError } from "../errors/index.js";
import { serializer, serviceDefinition } from "./adapter.js";

export interface CallOptions {
  /** Deadline in milliseconds from now. */
  timeoutMs?: number;
  signal?: AbortSignal;
  metadata?: Record<string, string>;
}

type I<M extends Pick<DescMethod, "input">> = MessageInitShape<M["input"]>;
type O<M extends Pick<DescMethod, "output">> = MessageShape<M["output"]>;

export type ClientMethod<M extends Pick<DescMethod, "input" | "output" | "methodKind">> =
  M["methodKind"] extends "unary" ? (req: I<M>, opts?: CallOptions) => Promise<O<M>>
  : M["methodKind"] extends "server_streaming" ? (req: I<M>, opts?: CallOptions) => AsyncIterable<O<M>>
  : M["methodKind"] extends "client_streaming" ? (reqs: AsyncIterable<I<M>>, opts?: CallOptions) => Promise<O<M>>
  : (reqs: AsyncIterable<I<M>>, opts?: CallOptions) => AsyncIterable<O<M>>;

export type Client<T extends GenServiceMethods> = { [K in keyof T]: ClientMethod<T[K]> } & { close(): void };

export interface ClientOptions {
  credentials?: grpc.ChannelCredentials;
  /** Default deadline for every call (ms); CallOptions.timeoutMs overrides. */
  defaultTimeoutMs?: number;
  channelOptions?: grpc.ChannelOptions;
  /** Metadata added to every call (e.g. peer authentication, which signs the call's method and request). */
  metadata?: (call: OutgoingCall) => Record<string, string>;
}

/** What a metadata hook sees of a call before it goes out. */
export interface OutgoingCall {
  /** "/pkg.Service/Method" */
  path: string;
  method: DescMethod;
  /** The serialized request of a unary or server-streaming call (exactly the bytes sent); undefined for streamed requests. */
  request?: Uint8Array;
}

export function createClient<T extends GenServiceMethods>(svc: GenService<T>, address: string, opts: ClientOptions = {}): Client<T> {
  const desc = svc as DescService;
  const Ctor = grpc.makeGenericClientConstructor(serviceDefinition(desc), desc.typeName);
  const raw = new Ctor(address, opts.credentials ?? grpc.credentials.createInsecure(), {
    "grpc.max_receive_message_length": 64 << 20,
    "grpc.max_send_message_length": 64 << 20,
    // No channelz service is served, so its per-call bookkeeping (counters, traces) is work for nothing.
    "grpc.enable_channelz": 0,
    ...opts.channelOptions,
  }) as unknown as Record<string, (...a: unknown[]) => unknown> & grpc.Client;
  const out: Record<string, unknown> = { close: () => raw.close() };

  for (const m of desc.methods) {
    const path = `/${desc.typeName}/${m.name}`;
    const encode = serializer(m.input);
    const callOpts = (o?: CallOptions, request?: Uint8Array): [grpc.Metadata, grpc.CallOptions] => {
      const md = new grpc.Metadata();
      for (const [k, v] of Object.entries({ ...opts.metadata?.({ path, method: m, ...(request ? { request } : {}) }), ...o?.metadata })) md.set(k, v);
      const t = o?.timeoutMs ?? opts.defaultTimeoutMs;
      return [md, t ? { deadline: Date.now() + t } : {}];
    };
    const msg = (v: unknown) => create(m.input, v as MessageInitShape<DescMessage>);
    // With a metadata hook, a single request is encoded once, here, so the hook sees the very bytes that are sent.
    const single = (v: unknown): [unknown, Uint8Array | undefined] => {
      if (!opts.metadata) return [msg(v), undefined];
      const bytes = encode(msg(v));
      return [bytes, bytes];
    };
    const fn = raw[m.localName]!.bind(raw);
    const abortable = (call: grpc.ClientUnaryCall | grpc.Call, signal?: AbortSignal) => {
      if (!signal) return;
      if (signal.aborted) call.cancel();
      else signal.addEventListener("abort", () => call.cancel(), { once: true });
    };
    const pump = async (call: grpc.ClientWritableStream<unknown>, reqs: AsyncIterable<unknown>) => {
      try {
        for await (const r of reqs) if (!call.write(msg(r))) await new Promise((res) => call.once("drain", res));
        call.end();
      } catch (err) {
        call.cancel();
        throw err;
      }
    };
    switch (m.methodKind) {
      case "unary":
        out[m.localName] = (req: unknown, o?: CallOptions) => new Promise((resolve, reject) => {
          const [body, bytes] = single(req);
          const [md, co] = callOpts(o, bytes);
          const call = fn(body, md, co, (err: grpc.ServiceError | null, res: unknown) => (err ? reject(ThocError.from(err)) : resolve(res))) as grpc.ClientUnaryCall;
          abortable(call, o?.signal);
        });
        break;
      case "client_streaming":
        out[m.localName] = (reqs: AsyncIterable<unknown>, o?: CallOptions) => new Promise((resolve, reject) => {
          const [md, co] = callOpts(o);
          const call = fn(md, co, (err: grpc.ServiceError | null, res: unknown) => (err ? reject(ThocError.from(err)) : resolve(res))) as grpc.ClientWritableStream<unknown>;
          abortable(call, o?.signal);
          pump(call, reqs).catch(reject);
        });
        break;
      case "server_streaming":
        out[m.localName] = (req: unknown, o?: CallOptions) => readStream(() => {
          const [body, bytes] = single(req);
          const [md, co] = callOpts(o, bytes);
          const call = fn(body, md, co) as grpc.ClientReadableStream<unknown>;
          abortable(call, o?.signal);
          return call;
        });
        break;
      case "bidi_streaming":
        out[m.localName] = (reqs: AsyncIterable<unknown>, o?: CallOptions) => readStream(() => {
          const [md, co] = callOpts(o);
          const call = fn(md, co) as grpc.ClientDuplexStream<unknown, unknown>;
          abortable(call, o?.signal);
          pump(call, reqs).catch(() => call.cancel());
          return call;
        });
        break;
    }
  }
  return out as Client<T>;
}

function readStream<T>(open: () => grpc.ClientReadableStream<unknown>): AsyncIterable<T> {
  return {
    async *[Symbol.asyncIterator]() {
      const call = open();
      try {
        for await (const item of call) yield item as T;
      } catch (err) {
        throw ThocError.from(err);
      } finally {
        call.cancel();
      }
    },
  };
}
