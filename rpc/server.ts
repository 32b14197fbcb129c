/**
 * The agent's gRPC server: services declared in .proto, the standard
 * grpc.health.v1.Health service, and server reflection (so grpcurl works).
 *
 * Health is served by rpc/health.ts. Reflection (@grpc/reflection, which
 * brings protobufjs and @grpc/proto-loader: a second protobuf runtime, ~8 MB
 * of RSS in every agent; docs/benchmarks.md "Idle footprint") is loaded at the
 * first reflection call, not at listen(): grpcurl is an operator's tool, an
 * agent mostly never sees it. The config module (for hostPort) is loaded in
 * listen(): rpc/index.ts is also the CLI's way to a client.
 */
import * as grpc from "@grpc/grpc-js";
import { toBinary, type DescFile, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { EventEmitter } from "node:events";
import { createRequire } from "node:module";
import path from "node:path";
import { listenError, type ThocError } from "../errors/index.js";
import net, { type Server as NetServer, type Socket } from "node:net";
import { serviceDefinition, serviceHandlers, type CallContext, type CallHooks, type CallObserver, type FinishedCall, type ServiceImpl } from "./adapter.js";
import { listenLocal } from "./local.js";
import { HealthService, type ServingStatus } from "./health.js";

export type { ServingStatus } from "./health.js";

/** The two versions of the reflection service grpcurl and others ask. */
const REFLECTION_PATHS = ["/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"];
type Reflection = Map<string, { def: grpc.MethodDefinition<unknown, unknown>; handler: (stream: unknown) => void }>;
const raw = (b: Buffer) => b;

export interface RpcServerOptions {
  observe?: CallObserver;
  onInternalError?: (e: ThocError) => void;
  /** Extra grpc-js server options (message sizes, keepalive). */
  options?: grpc.ServerOptions;
  /** Runs before every handler of every service added (streams included); throws a ThocError to refuse the call. */
  authorize?: (method: string, ctx: CallContext) => void;
  /** Runs after every call, refused ones included. */
  finished?: (call: FinishedCall) => void;
  /** Methods whose request stream's first message `finished` needs (default: all). */
  wantsRequest?: (method: string) => boolean;
}

/**
 * TLS server credentials that ask every client for a certificate but let one
 * without through: the call is then anonymous and the authorize hook decides
 * (UNAUTHENTICATED for a method that needs an identity, while public methods
 * such as a join with a token still work). grpc-js's createSsl() can only
 * require a certificate or not ask for one; its certificate-provider variant
 * can ask without requiring. One static provider answers both its questions
 * (CA and identity), so the order of its two provider arguments does not matter.
 * It answers a moment later, not at once: grpc-js registers its listener before
 * the watcher that applies an answer, and an answer given at once is lost.
 */
export function tlsRequestingClientCert(ca: Buffer, cert: Buffer, key: Buffer): grpc.ServerCredentials {
  const provider: grpc.experimental.CertificateProvider = {
    addCaCertificateListener: (l) => queueMicrotask(() => l({ caCertificate: ca })),
    removeCaCertificateListener: () => {},
    addIdentityCertificateListener: (l) => queueMicrotask(() => l({ certificate: cert, privateKey: key })),
    removeIdentityCertificateListener: () => {},
  };
  return grpc.experimental.createCertificateProviderServerCredentials(provider, provider, false);
}

export class RpcServer {
  readonly grpc: grpc.Server;
  /** Statuses set before listen() created the health service; it starts from them. */
  private readonly statuses = new Map<string, ServingStatus>([["", "NOT_SERVING"]]);
  private health?: HealthService;
  private reflection?: Promise<Reflection>;
  private readonly files = new Map<string, DescFile>();
  private readonly services: string[] = [];
  private reflectionAdded = false;
  private boundPort = 0;
  private secure = false;
  private local?: { server: NetServer; destroy(): void };
  private tcp?: { server: NetServer; destroy(): void };
  private readonly prefaces: { preface: Buffer; handle: (socket: Socket) => void }[] = [];
  private readonly rawSockets = new Set<Socket>();
  private readonly paths: string[] = [];

  constructor(private readonly opts: RpcServerOptions = {}) {
    this.grpc = new grpc.Server({
      "grpc.max_receive_message_length": 64 << 20,
      "grpc.max_send_message_length": 64 << 20,
      "grpc.keepalive_permit_without_calls": 1,
      // No channelz service is served, so its per-call bookkeeping (counters, traces) is work for nothing.
      "grpc.enable_channelz": 0,
      ...opts.options,
    });
  }

  /** Registers a service declared in .proto with its typed implementation. */
  add<T extends GenServiceMethods>(svc: GenService<T>, impl: ServiceImpl<T>): this {
    const desc = svc as DescService;
    const hooks: CallHooks = { authorize: this.opts.authorize, finished: this.opts.finished, wantsRequest: this.opts.wantsRequest, secure: () => this.secure };
    this.grpc.addService(serviceDefinition(desc), serviceHandlers(svc, impl, this.opts.observe, this.opts.onInternalError, hooks));
    for (const m of desc.methods) this.paths.push(`/${desc.typeName}/${m.name}`);
    this.services.push(desc.typeName);
    const addFile = (f: DescFile) => {
      if (this.files.has(f.proto.name)) return;
      this.files.set(f.proto.name, f);
      f.dependencies.forEach(addFile);
    };
    addFile(desc.file);
    this.setServing(desc.typeName, "NOT_SERVING");
    return this;
  }

  /** Health of one service ("" is the whole server). */
  setServing(service: string, status: ServingStatus): void {
    this.statuses.set(service, status);
    this.health?.setStatus(service, status);
  }

  setAllServing(status: ServingStatus): void {
    this.setServing("", status);
    for (const s of this.services) this.setServing(s, status);
  }

  get serviceNames(): readonly string[] {
    return this.services;
  }

  /** "/pkg.Service/Method" of every method of every service added. */
  get methodPaths(): readonly string[] {
    return this.paths;
  }

  get port(): number {
    return this.boundPort;
  }

  private addHealthAndReflection(): void {
    if (this.reflectionAdded) return;
    this.reflectionAdded = true;
    this.health = new HealthService(this.statuses);
    this.health.addToServer(this.grpc);
    // Raw bytes in and out until the first call has loaded @grpc/reflection; then its own (de)serializers apply.
    for (const p of REFLECTION_PATHS) {
      const name = p.slice(p.lastIndexOf("/") + 1);
      const def: grpc.ServiceDefinition = { [name]: { path: p, requestStream: true, responseStream: true, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw } };
      this.grpc.addService(def, { [name]: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => this.reflect(p, call) });
    }
  }

  /** Serves one reflection stream with @grpc/reflection's handler for path, through a stream that (de)serializes its messages. */
  private reflect(p: string, call: grpc.ServerDuplexStream<Buffer, Buffer>): void {
    this.reflection ??= this.loadReflection();
    this.reflection.then((impls) => {
      const r = impls.get(p);
      if (!r) throw new Error(`@grpc/reflection has no ${p}`);
      // What @grpc/reflection's handler uses of a call: data and end events, write() and end().
      const stream = Object.assign(new EventEmitter(), {
        write: (msg: unknown) => call.write(r.def.responseSerialize(msg)),
        end: () => call.end(),
      });
      r.handler(stream);
      call.on("data", (b: Buffer) => stream.emit("data", r.def.requestDeserialize(b)));
      call.on("end", () => stream.emit("end"));
    }).catch((err: Error) => call.emit("error", { code: grpc.status.INTERNAL, details: `server reflection unavailable: ${err.message}` }));
  }

  private async loadReflection(): Promise<Reflection> {
    const [{ ReflectionService }, { loadSync }] = await Promise.all([import("@grpc/reflection"), import("@grpc/proto-loader")]);
    const protos = [...this.files.values()].map((f) => Buffer.from(toBinary(FileDescriptorProtoSchema, f.proto)));
    // @grpc/reflection indexes whatever fileDescriptorProtos it finds in a
    // proto-loader package definition; one entry carrying all files suffices.
    const pkg: Record<string, unknown> = Object.fromEntries(this.services.map((s, i) => [s, i === 0 ? { fileDescriptorProtos: protos } : {}]));
    // grpc.health.v1 is described by grpc-health-check's .proto (the file only: rpc/health.ts serves it).
    const healthProto = path.join(path.dirname(createRequire(import.meta.url).resolve("grpc-health-check")), "../../proto/health/v1/health.proto");
    Object.assign(pkg, loadSync(healthProto));
    const out: Reflection = new Map();
    const capture = {
      addService(def: grpc.ServiceDefinition, impl: grpc.UntypedServiceImplementation) {
        for (const [name, m] of Object.entries(def)) {
          const handler = (impl[name] ?? impl[m.originalName ?? ""]) as ((stream: unknown) => void) | undefined;
          if (handler) out.set(m.path, { def: m as grpc.MethodDefinition<unknown, unknown>, handler });
        }
      },
    };
    new ReflectionService(pkg as never).addToServer(capture as never);
    return out;
  }

  /**
   * Another protocol on the gRPC port (the object store's bulk data path): a
   * connection whose first bytes are `preface` goes to `handle` (preface
   * consumed, the bytes after it still to read), every other one to gRPC.
   * Whether the port speaks TLS is `secure` after listen(); the handler
   * secures its own connections the same way.
   */
  addPreface(preface: Buffer, handle: (socket: Socket) => void): void {
    this.prefaces.push({ preface, handle });
  }

  /** Whether the TCP listener speaks TLS (known after listen()). */
  get isSecure(): boolean {
    return this.secure;
  }

  /**
   * Binds host:port (0 picks a free port) and returns the bound port. The
   * socket is ours, not grpc-js's: each connection is told apart by its first
   * bytes (a registered preface, else gRPC, which a connection injector serves
   * with the same credentials as a bound port would).
   */
  async listen(host: string, port: number, creds: grpc.ServerCredentials = grpc.ServerCredentials.createInsecure()): Promise<number> {
    this.addHealthAndReflection();
    const { hostPort } = await import("../config/index.js");
    const addr = hostPort(host, port);
    const injector = this.grpc.createConnectionInjector(creds);
    const server = net.createServer({ noDelay: true }, (sock) => this.route(sock, (s) => injector.injectConnection(s)));
    this.boundPort = await new Promise<number>((resolve, reject) => {
      server.once("error", (err) => reject(listenError(err, "gRPC", addr, "--grpc-port")));
      server.listen({ host: host.replace(/^\[|\]$/g, ""), port }, () => resolve((server.address() as net.AddressInfo).port));
    });
    server.on("error", () => { /* accept errors (EMFILE) must not crash the agent; the listener keeps going */ });
    this.tcp = { server, destroy: () => injector.destroy() };
    this.secure = creds._isSecure();
    return this.boundPort;
  }

  /** Reads a connection's first bytes and hands it to the protocol they name. */
  private route(sock: Socket, grpcConn: (s: Socket) => void): void {
    if (this.prefaces.length === 0) return grpcConn(sock);
    let got: Buffer = Buffer.alloc(0);
    // A client that connects and says nothing is dropped, as grpc-js's handshake timeout would.
    const onSilent = () => sock.destroy();
    sock.setTimeout(20_000);
    sock.on("timeout", onSilent);
    const onError = () => sock.destroy();
    sock.on("error", onError);
    const hand = (to: (s: Socket) => void, rest: Buffer) => {
      sock.off("data", onData);
      sock.off("error", onError);
      // Off, not just disarmed: the protocol that takes the socket may arm its own idle timeout, which must not destroy it through ours.
      sock.setTimeout(0);
      sock.off("timeout", onSilent);
      sock.pause();
      if (rest.length) sock.unshift(rest);
      to(sock);
    };
    const onData = (c: Buffer) => {
      got = got.length ? Buffer.concat([got, c]) : c;
      let maybe = false;
      for (const p of this.prefaces) {
        const n = Math.min(p.preface.length, got.length);
        if (!got.subarray(0, n).equals(p.preface.subarray(0, n))) continue;
        if (got.length < p.preface.length) { maybe = true; continue; }
        this.rawSockets.add(sock);
        sock.once("close", () => this.rawSockets.delete(sock));
        return hand(p.handle, got.subarray(p.preface.length));
      }
      if (!maybe) hand(grpcConn, got);
    };
    sock.on("data", onData);
  }

  /**
   * Also serves the API on a unix socket (rpc/local.ts): mode 0660 with group
   * `gid`, or 0600 without one; every call on it carries the connecting
   * process's uid, gid and pid as its caller.
   */
  async listenLocal(socketPath: string, gid?: number): Promise<void> {
    const injector = this.grpc.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    const server = await listenLocal(socketPath, { gid, inject: (sock) => injector.injectConnection(sock) });
    this.local = { server, destroy: () => injector.destroy() };
  }

  /** Like a crash: the listeners close and every connection drops at once, calls in flight included. */
  forceShutdown(): void {
    this.setAllServing("NOT_SERVING");
    for (const l of [this.tcp, this.local]) {
      l?.server.close();
      l?.destroy();
    }
    this.tcp = this.local = undefined;
    this.grpc.forceShutdown();
    for (const s of this.rawSockets) s.destroy();
  }

  /** Stops accepting calls, lets in-flight calls finish for up to timeoutMs, then cancels the rest. */
  async shutdown(timeoutMs: number): Promise<void> {
    this.setAllServing("NOT_SERVING");
    const local = this.local;
    this.local = undefined;
    local?.server.close();
    // New connections are refused now; gRPC sessions close gracefully through tryShutdown below
    // (an injector's drain() would mark them closed first, and tryShutdown would then not wait for them).
    const tcp = this.tcp;
    this.tcp = undefined;
    tcp?.server.close();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => { this.grpc.forceShutdown(); resolve(); }, timeoutMs);
      this.grpc.tryShutdown(() => { clearTimeout(timer); resolve(); });
    });
    tcp?.destroy();
    local?.destroy();
    for (const sock of this.rawSockets) sock.destroy();
  }
}
