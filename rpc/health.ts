/**
 * grpc.health.v1.Health (Check, Watch, List), served without the
 * grpc-health-check package: that package parses its .proto with protobufjs
 * at import, and with @grpc/reflection it kept a second protobuf runtime
 * (~8 MB of RSS, docs/benchmarks.md "Idle footprint") resident in every agent
 * for a service that carries one string and one enum. The messages are
 * encoded here with protobuf-es's wire helpers; the behaviour is
 * grpc-health-check 2.x's: Check answers NOT_FOUND for an unknown service,
 * Watch sends the current status (SERVICE_UNKNOWN if none) and every change
 * until the client cancels, List refuses more than 100 services.
 */
import * as grpc from "@grpc/grpc-js";
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";

export type ServingStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";
const STATUS_NUMBER: Record<ServingStatus, number> = { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 };
const LIST_LIMIT = 100;

/** HealthCheckRequest { string service = 1; }: unknown fields skipped, as any protobuf parser does. */
function decodeRequest(buf: Buffer): { service: string } {
  const r = new BinaryReader(buf);
  let service = "";
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no === 1 && wt === WireType.LengthDelimited) service = r.string();
    else r.skip(wt, no);
  }
  return { service };
}

/** HealthCheckResponse { ServingStatus status = 1; } (a zero enum is left out, per proto3). */
function writeStatus(w: BinaryWriter, status: ServingStatus): BinaryWriter {
  const n = STATUS_NUMBER[status];
  if (n !== 0) w.tag(1, WireType.Varint).int32(n);
  return w;
}
const encodeStatus = (status: ServingStatus) => Buffer.from(writeStatus(new BinaryWriter(), status).finish());

/** HealthListResponse { map<string, HealthCheckResponse> statuses = 1; } */
function encodeList(statuses: Map<string, ServingStatus>): Buffer {
  const w = new BinaryWriter();
  for (const [service, status] of statuses) {
    w.tag(1, WireType.LengthDelimited).fork();
    w.tag(1, WireType.LengthDelimited).string(service);
    w.tag(2, WireType.LengthDelimited).fork();
    writeStatus(w, status).join();
    w.join();
  }
  return Buffer.from(w.finish());
}

const raw = (b: Buffer) => b;

export class HealthService {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly watchers = new Map<string, Set<(s: ServingStatus) => void>>();

  constructor(initial: Iterable<[string, ServingStatus]> = []) {
    for (const [k, v] of initial) this.statuses.set(k, v);
  }

  setStatus(service: string, status: ServingStatus): void {
    this.statuses.set(service, status);
    for (const w of this.watchers.get(service) ?? []) w(status);
  }

  addToServer(server: grpc.Server): void {
    const def: grpc.ServiceDefinition = {
      Check: { path: "/grpc.health.v1.Health/Check", requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: decodeRequest, responseSerialize: raw, responseDeserialize: raw },
      Watch: { path: "/grpc.health.v1.Health/Watch", requestStream: false, responseStream: true, requestSerialize: raw, requestDeserialize: decodeRequest, responseSerialize: raw, responseDeserialize: raw },
      List: { path: "/grpc.health.v1.Health/List", requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw },
    };
    server.addService(def, {
      Check: (call: grpc.ServerUnaryCall<{ service: string }, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        const status = this.statuses.get(call.request.service);
        if (status) cb(null, encodeStatus(status));
        else cb({ code: grpc.status.NOT_FOUND, details: `Health status unknown for service ${call.request.service}` });
      },
      Watch: (call: grpc.ServerWritableStream<{ service: string }, Buffer>) => {
        const service = call.request.service;
        const watcher = (s: ServingStatus) => { call.write(encodeStatus(s)); };
        let set = this.watchers.get(service);
        if (!set) this.watchers.set(service, (set = new Set()));
        set.add(watcher);
        call.on("cancelled", () => {
          set!.delete(watcher);
          if (set!.size === 0 && this.watchers.get(service) === set) this.watchers.delete(service);
        });
        watcher(this.statuses.get(service) ?? "SERVICE_UNKNOWN");
      },
      List: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        if (this.statuses.size > LIST_LIMIT) cb({ code: grpc.status.RESOURCE_EXHAUSTED, details: "Too many services to list." });
        else cb(null, encodeList(this.statuses));
      },
    } as grpc.UntypedServiceImplementation);
  }
}
