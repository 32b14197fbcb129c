/**
 * Containers in the cluster's VM table: what the scheduler needs of a
 * node's container subsystem (ContainerNode, a narrow seam the composition
 * root fills from container/'s manager), a record as a table entry, an entry
 * as a Container message (for nodes that do not run it), and what a create
 * reserves for placement.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { MIN_CPUS, MIN_MEMORY_MB, type ContainerRecord, type ContainerSpec, type CreateOptions } from "../container/index.js";
import { ThocError } from "../errors/index.js";
import type { ContainerSchema, ContainerSpec as ContainerSpecPb } from "../proto/index.js";
import type { FitRequest } from "../vm/index.js";
import type { VmEntry } from "./vm-table.js";

export type ContainerInit = MessageInitShape<typeof ContainerSchema>;

/**
 * This node's containers as the scheduler uses them: the fenced create
 * (commit), the node's own records (routing, publishing the table), delete
 * (forced deletes carried out when the node returns), and the protobuf
 * mapping and validation container/ owns. Every other call (start, stop,
 * logs, exec, stats...) goes through the local ContainerService given to
 * SchedulerSubsystem.routeContainerService.
 */
export interface ContainerNode {
  /** Whether the engine answers now (published in the host table; the leader skips nodes without one). */
  available(): boolean;
  /** Node-side admission and create (fit() over VMs' and containers' reservations, GPUs, host ports). */
  create(spec: ContainerSpec, o: CreateOptions): Promise<ContainerRecord>;
  /** Throws not_found when this node has no such container. */
  get(name: string): Promise<ContainerRecord>;
  list(): Promise<ContainerRecord[]>;
  /** Returns the volumes removed. */
  delete(name: string, o: { keepVolumes: boolean }): Promise<string[]>;
  /** Validates a protobuf spec with no node state (names, ports, env, volumes...); throws invalid_argument. */
  specFromPb(pb: ContainerSpecPb): ContainerSpec;
  toPb(r: ContainerRecord): ContainerInit;
}

/** What a container with no reservation counts for in placement (the proto's "0 means none"): container/'s own figures. */
export { MIN_CPUS, MIN_MEMORY_MB };
const NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** "8080/tcp" */
export const portKey = (hostPort: number, protocol: string): string => `${hostPort}/${protocol || "tcp"}`;

/** What placement needs of a container create: its fit request and the host ports it binds. */
export interface ContainerPlacement { fit: FitRequest; ports: string[]; image: string }

/**
 * The reservation of a create, from a spec validated by container/ when this
 * node has it (the leader may run no engine), else checked here as far as
 * placement depends on it: the name, the image, ports, CPUs and memory.
 */
export function containerPlacement(pb: ContainerSpecPb | undefined, validate?: (pb: ContainerSpecPb) => ContainerSpec): ContainerPlacement {
  if (!pb) throw new ThocError("invalid_argument", "spec: missing");
  const s = validate?.(pb);
  const name = s?.name ?? pb.name;
  if (!NAME_RE.test(name)) throw new ThocError("invalid_argument", `name: "${name}" is not a valid container name: use 1-63 lowercase letters, digits and '-', starting with a letter or digit`, { field: "name" });
  const image = s?.image ?? pb.image;
  if (!image) throw new ThocError("invalid_argument", "image: missing (an imported image's name, or a registry reference)", { field: "image" });
  const cpus = s?.cpus ?? pb.cpus;
  if (!Number.isFinite(cpus) || cpus < 0) throw new ThocError("invalid_argument", `cpus: ${cpus} must be 0 (no reservation) or more`, { field: "cpus" });
  const memoryMB = s?.memoryMB ?? pb.memoryMb;
  const ports: string[] = [];
  for (const p of s?.ports ?? pb.ports) {
    const protocol = p.protocol || "tcp";
    if (protocol !== "tcp" && protocol !== "udp") throw new ThocError("invalid_argument", `ports: protocol "${protocol}" must be tcp or udp`, { field: "ports" });
    if (!(p.containerPort >= 1 && p.containerPort <= 65535) || !(p.hostPort >= 0 && p.hostPort <= 65535)) {
      throw new ThocError("invalid_argument", `ports: ${p.hostPort}:${p.containerPort}/${protocol}: ports are 1-65535 (host port 0: the engine picks one)`, { field: "ports" });
    }
    if (p.hostPort === 0) continue;
    const k = portKey(p.hostPort, protocol);
    if (ports.includes(k)) throw new ThocError("invalid_argument", `ports: host port ${k} is mapped twice`, { field: "ports" });
    ports.push(k);
  }
  const gpuIds = s?.gpuDeviceIds ?? pb.gpuDeviceIds;
  return {
    image, ports,
    fit: {
      name, vcpus: cpus > 0 ? cpus : MIN_CPUS, ramMB: memoryMB > 0 ? memoryMB : MIN_MEMORY_MB,
      ...(gpuIds.length ? { gpu: { enabled: true, mode: "passthrough" as const, deviceIds: [...gpuIds], migProfile: "" } } : {}),
    },
  };
}

/** A container record as its table entry (what the other nodes know of it). */
export function containerEntryOf(r: ContainerRecord, nodeId: string): VmEntry {
  const bound = r.ports.length ? r.ports : r.spec.ports.filter((p) => p.hostPort > 0);
  return {
    name: r.name, uuid: r.uuid, nodeId, nodeName: r.node, status: r.status, detail: r.detail, image: r.spec.image, imageKind: "",
    vcpus: 0, ramMB: r.spec.memoryMB > 0 ? r.spec.memoryMB : MIN_MEMORY_MB, diskGB: 0, gpus: r.gpus.map(({ mdevUuid: _, ...g }) => g),
    group: r.group ?? "", requestId: r.requestId ?? "", createdAt: r.createdAt, mac: "",
    kind: "container", cpus: r.spec.cpus > 0 ? r.spec.cpus : MIN_CPUS, ports: [...new Set(bound.filter((p) => p.hostPort > 0).map((p) => portKey(p.hostPort, p.protocol)))],
    ct: {
      kind: r.spec.kind, health: r.health, desiredState: r.desiredState, restartCount: r.restartCount, exitCode: r.exitCode, startedAt: r.startedAt,
      memoryMB: r.spec.memoryMB, mappings: bound.map((p) => ({ containerPort: p.containerPort, hostPort: p.hostPort, protocol: p.protocol, hostIp: p.hostIp })),
    },
  };
}

/** A container table entry as a Container message, for containers of other nodes (down nodes' read "unknown"). */
export function containerEntryToPb(e: VmEntry, nodeUp: boolean, nodeName: string): ContainerInit {
  const c = e.ct;
  const name = nodeName || e.nodeName;
  const ports = (c?.mappings ?? []).map((p) => ({ containerPort: p.containerPort, hostPort: p.hostPort, protocol: p.protocol, hostIp: p.hostIp }));
  return {
    name: e.name, status: nodeUp ? e.status : "unknown", node: name, nodeId: e.nodeId,
    detail: nodeUp ? e.detail : `node ${name} is down: last known status ${e.status}`,
    spec: { name: e.name, kind: c?.kind ?? "app", image: e.image, ports, cpus: e.cpus ?? 0, memoryMb: c?.memoryMB ?? 0 },
    createdAtMs: BigInt(e.createdAt), startedAtMs: BigInt(c?.startedAt ?? 0), exitCode: c?.exitCode ?? 0, restartCount: c?.restartCount ?? 0,
    health: c?.health ?? "", ports, gpuDevices: e.gpus.map((g) => g.pciAddress), group: e.group, desiredState: c?.desiredState ?? "",
  };
}
