/**
 * The agent's gRPC server: services declared in .proto, the standard
 * grpc.health.v1.Health service, and server reflection (so grpcurl works).
 *
 * The health and reflection packages (and the config module, for hostPort) are
 * loaded in listen(), not at the top: rpc/index.ts is also the CLI's way to a
 * client, and those packages (protobufjs, yaml) cost the CLI more start-up time
 * than everything else it loads.
 */
import * as grpc from "@grpc/grpc-js";
import { toBinary, type DescFile, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import type { HealthImplementation, ServingStatus } from "grpc-health-check";
import { createRequire } from "node:module";
import path from "node:path";
import { listenError, type ThocError } from "../errors/index.js";
import type { Server as NetServer } from "node:net";
import { serviceDefinition, serviceHandlers, type CallContext, type CallHooks, type CallObserver, type FinishedCall, type ServiceImpl } from "./adapter.js";
import { listenLocal } from "./local.js";

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
  private health?: HealthImplementation;
  private readonly files = new Map<string, DescFile>();
  private readonly services: string[] = [];
  private reflectionAdded = false;
  private boundPort = 0;
  private secure = false;
  private local?: { server: NetServer; drain(graceMs: number): void; destroy(): void };
  private readonly paths: string[] = [];

  constructor(private readonly opts: RpcServerOptions = {}) {
    this.grpc = new grpc.Server({
      "grpc.max_receive_message_length": 64 << 20,
      "grpc.max_send_message_length": 64 << 20,
      "grpc.keepalive_permit_without_calls": 1,
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

  private async addHealthAndReflection(): Promise<void> {
    if (this.reflectionAdded) return;
    this.reflectionAdded = true;
    const [{ HealthImplementation }, { ReflectionService }, { loadSync }] =
      await Promise.all([import("grpc-health-check"), import("@grpc/reflection"), import("@grpc/proto-loader")]);
    this.health = new HealthImplementation(Object.fromEntries(this.statuses));
    this.health.addToServer(this.grpc);
    const protos = [...this.files.values()].map((f) => Buffer.from(toBinary(FileDescriptorProtoSchema, f.proto)));
    // @grpc/reflection indexes whatever fileDescriptorProtos it finds in a
    // proto-loader package definition; one entry carrying all files suffices.
    const pkg: Record<string, unknown> = Object.fromEntries(this.services.map((s, i) => [s, i === 0 ? { fileDescriptorProtos: protos } : {}]));
    // grpc.health.v1 comes from grpc-health-check's own .proto.
    const healthProto = path.join(path.dirname(createRequire(import.meta.url).resolve("grpc-health-check")), "../../proto/health/v1/health.proto");
    Object.assign(pkg, loadSync(healthProto));
    new ReflectionService(pkg as never).addToServer(this.grpc);
  }

  /** Binds host:port (0 picks a free port) and returns the bound port. */
  async listen(host: string, port: number, creds: grpc.ServerCredentials = grpc.ServerCredentials.createInsecure()): Promise<number> {
    await this.addHealthAndReflection();
    const { hostPort } = await import("../config/index.js");
    const addr = hostPort(host, port);
    this.boundPort = await new Promise<number>((resolve, reject) => {
      this.grpc.bindAsync(addr, creds, (err, p) => (err ? reject(listenError(err, "gRPC", addr, "--grpc-port")) : resolve(p)));
    });
    this.secure = creds._isSecure();
    return this.boundPort;
  }

  /**
   * Also serves the API on a unix socket (rpc/local.ts): mode 0660 with group
   * `gid`, or 0600 without one; every call on it carries the connecting
   * process's uid, gid and pid as its caller.
   */
  async listenLocal(socketPath: string, gid?: number): Promise<void> {
    const injector = this.grpc.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    const server = await listenLocal(socketPath, { gid, inject: (sock) => injector.injectConnection(sock) });
    this.local = { server, drain: (ms) => injector.drain(ms), destroy: () => injector.destroy() };
  }

  /** Stops accepting calls, lets in-flight calls finish for up to timeoutMs, then cancels the rest. */
  async shutdown(timeoutMs: number): Promise<void> {
    this.setAllServing("NOT_SERVING");
    if (this.local) {
      const { server, drain, destroy } = this.local;
      this.local = undefined;
      server.close();
      drain(timeoutMs);
      setTimeout(destroy, timeoutMs).unref();
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => { this.grpc.forceShutdown(); resolve(); }, timeoutMs);
      this.grpc.tryShutdown(() => { clearTimeout(timer); resolve(); });
    });
  }
}
