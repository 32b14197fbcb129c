/**
 * The agent's gRPC server: services declared in .proto, the standard
 * grpc.health.v1.Health service, and server reflection (so grpcurl works).
 */
import * as grpc from "@grpc/grpc-js";
import { toBinary, type DescFile, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { HealthImplementation, type ServingStatus } from "grpc-health-check";
import { ReflectionService } from "@grpc/reflection";
import { loadSync } from "@grpc/proto-loader";
import { createRequire } from "node:module";
import path from "node:path";
import { hostPort } from "../config/index.js";
import { ThocError, listenError } from "../errors/index.js";
import { serviceDefinition, serviceHandlers, type CallObserver, type ServiceImpl } from "./adapter.js";

export interface RpcServerOptions {
  observe?: CallObserver;
  onInternalError?: (e: ThocError) => void;
  /** Extra grpc-js server options (message sizes, keepalive). */
  options?: grpc.ServerOptions;
}

export class RpcServer {
  readonly grpc: grpc.Server;
  private readonly health = new HealthImplementation({ "": "NOT_SERVING" });
  private readonly files = new Map<string, DescFile>();
  private readonly services: string[] = [];
  private reflectionAdded = false;
  private boundPort = 0;

  constructor(private readonly opts: RpcServerOptions = {}) {
    this.grpc = new grpc.Server({
      "grpc.max_receive_message_length": 64 << 20,
      "grpc.max_send_message_length": 64 << 20,
      "grpc.keepalive_permit_without_calls": 1,
      ...opts.options,
    });
    this.health.addToServer(this.grpc);
  }

  /** Registers a service declared in .proto with its typed implementation. */
  add<T extends GenServiceMethods>(svc: GenService<T>, impl: ServiceImpl<T>): this {
    const desc = svc as DescService;
    this.grpc.addService(serviceDefinition(desc), serviceHandlers(svc, impl, this.opts.observe, this.opts.onInternalError));
    this.services.push(desc.typeName);
    const addFile = (f: DescFile) => {
      if (this.files.has(f.proto.name)) return;
      this.files.set(f.proto.name, f);
      f.dependencies.forEach(addFile);
    };
    addFile(desc.file);
    this.health.setStatus(desc.typeName, "NOT_SERVING");
    return this;
  }

  /** Health of one service ("" is the whole server). */
  setServing(service: string, status: ServingStatus): void {
    this.health.setStatus(service, status);
  }

  setAllServing(status: ServingStatus): void {
    this.health.setStatus("", status);
    for (const s of this.services) this.health.setStatus(s, status);
  }

  get serviceNames(): readonly string[] {
    return this.services;
  }

  get port(): number {
    return this.boundPort;
  }

  private addReflection(): void {
    if (this.reflectionAdded) return;
    this.reflectionAdded = true;
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
    this.addReflection();
    const addr = hostPort(host, port);
    this.boundPort = await new Promise<number>((resolve, reject) => {
      this.grpc.bindAsync(addr, creds, (err, p) => (err ? reject(listenError(err, "gRPC", addr, "--grpc-port")) : resolve(p)));
    });
    return this.boundPort;
  }

  /** Stops accepting calls, lets in-flight calls finish for up to timeoutMs, then cancels the rest. */
  async shutdown(timeoutMs: number): Promise<void> {
    this.setAllServing("NOT_SERVING");
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => { this.grpc.forceShutdown(); resolve(); }, timeoutMs);
      this.grpc.tryShutdown(() => { clearTimeout(timer); resolve(); });
    });
  }
}
