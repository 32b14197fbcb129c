/**
 * For scheduler tests only: a node's containers kept in memory behind the
 * ContainerNode seam (container/'s manager stands there in the agent), with
 * the node-side refusals placement must cope with: a host port some other
 * process holds, a name already present, an engine that is down.
 */
import type { ContainerRecord, ContainerSpec, CreateOptions } from "../container/index.js";
import { ThocError } from "../errors/index.js";
import type { ContainerSpec as ContainerSpecPb } from "../proto/index.js";
import type { ContainerInit, ContainerNode } from "./container-table.js";

export function specOf(pb: ContainerSpecPb): ContainerSpec {
  return {
    name: pb.name, kind: pb.kind === "inference" ? "inference" : "app", image: pb.image, registry: pb.registry, registryUser: pb.registryAuth?.username ?? "",
    ports: pb.ports.map((p) => ({ containerPort: p.containerPort, hostPort: p.hostPort, protocol: p.protocol === "udp" ? "udp" : "tcp", hostIp: p.hostIp })),
    volumes: [], env: { ...pb.env }, command: [...pb.command], cpus: pb.cpus, memoryMB: pb.memoryMb, gpuDeviceIds: [...pb.gpuDeviceIds],
    healthCheckPath: "", healthIntervalS: 5, healthRetries: 3, restartPolicy: "on-failure", modelId: "", modelPath: "", labels: {},
  };
}

export class MemContainerNode implements ContainerNode {
  readonly records = new Map<string, ContainerRecord>();
  /** Host ports other processes hold ("8080/tcp"): a create binding one fails as the engine would. */
  readonly foreignPorts = new Set<string>();
  readonly deletes: { name: string; keepVolumes: boolean }[] = [];
  /** Registry passwords the creates received (to check they travel, and only to the create). */
  readonly passwords: string[] = [];
  up = true;
  private n = 0;

  constructor(readonly nodeName: string) {}

  available(): boolean { return this.up; }

  async create(spec: ContainerSpec, o: CreateOptions): Promise<ContainerRecord> {
    if (!this.up) throw new ThocError("unavailable", "the engine does not answer");
    if (this.records.has(spec.name)) throw new ThocError("already_exists", `container ${spec.name} exists`);
    for (const p of spec.ports) {
      if (this.foreignPorts.has(`${p.hostPort}/${p.protocol}`)) throw new ThocError("resource_exhausted", `host port ${p.hostPort}/${p.protocol} is in use on ${this.nodeName}`);
    }
    if (o.registryPassword) this.passwords.push(o.registryPassword);
    const r: ContainerRecord = {
      name: spec.name, uuid: `u-${spec.name}-${++this.n}`, engineId: `e${this.n}`, spec, status: o.noStart ? "stopped" : "running", health: "", detail: "",
      desiredState: o.noStart ? "stopped" : "running", node: this.nodeName, createdAt: 1000, startedAt: o.noStart ? 0 : 2000, exitCode: 0, restartCount: 0,
      ports: spec.ports, gpus: [], imageId: "sha256:1", ...(o.group ? { group: o.group } : {}), ...(o.requestId ? { requestId: o.requestId } : {}),
    };
    this.records.set(r.name, r);
    return r;
  }

  async get(name: string): Promise<ContainerRecord> {
    const r = this.records.get(name);
    if (!r) throw new ThocError("not_found", `no container ${name} on ${this.nodeName}`);
    return r;
  }

  async list(): Promise<ContainerRecord[]> { return [...this.records.values()]; }

  async delete(name: string, o: { keepVolumes: boolean }): Promise<string[]> {
    await this.get(name);
    this.records.delete(name);
    this.deletes.push({ name, keepVolumes: o.keepVolumes });
    return [];
  }

  specFromPb(pb: ContainerSpecPb): ContainerSpec { return specOf(pb); }

  toPb(r: ContainerRecord): ContainerInit {
    return { name: r.name, id: r.engineId, status: r.status, node: r.node, spec: { name: r.name, image: r.spec.image, cpus: r.spec.cpus }, group: r.group ?? "" };
  }
}
