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
import { serviceDefinition, serviceHandlers, type CallObserver, type ServiceImpl } from "./adapter.js";

export interface RpcServerOptions {
  observe?: CallObserver;
  onInternalError?: (e: ThocError) => void;
  /** Extra grpc-js server options (message sizes, keepalive). */
  options?: grpc.ServerOptions;
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
    this.grpc.addService(serviceDefinition(desc), serviceHandlers(svc, impl, this.opts.observe, this.opts.onInternalError));
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
