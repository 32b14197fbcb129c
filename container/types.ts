/**
 * The container subsystem's contract with the rest of the agent: the
 * record a node keeps per container, the change it reports (the scheduler's
 * cluster table and the event stream), and the manager's operations the
 * scheduler's routing and placement call. Containers share the VM table's
 * namespace (names unique across VMs and containers) and the node's GPU
 * ledger with VMs.
 */
import type { GpuAllocation } from "../vm/index.js";

export type ContainerKind = "app" | "inference";
export type RestartPolicy = "no" | "on-failure" | "always";
export type ContainerStatus = "creating" | "running" | "unhealthy" | "stopped" | "exited" | "restarting" | "error" | "unknown";
export type ContainerTrigger = "user" | "scheduler" | "engine" | "reconcile" | "health" | "restart-policy";

export interface PortSpec { containerPort: number; hostPort: number; protocol: "tcp" | "udp"; hostIp: string }
export interface VolumeSpec { name: string; containerPath: string; readOnly: boolean }

/** A validated ContainerSpec (container/spec.ts validates the protobuf one into this). */
export interface ContainerSpec {
  name: string;
  kind: ContainerKind;
  image: string;
  registry: string;
  /** Only the username is kept; the password is used for the pull and dropped. */
  registryUser: string;
  ports: PortSpec[];
  volumes: VolumeSpec[];
  env: Record<string, string>;
  command: string[];
  cpus: number;
  memoryMB: number;
  gpuDeviceIds: string[];
  healthCheckPath: string;
  healthIntervalS: number;
  healthRetries: number;
  restartPolicy: RestartPolicy;
  modelId: string;
  modelPath: string;
  labels: Record<string, string>;
}

export interface ContainerRecord {
  name: string;
  uuid: string;
  /** The engine's id; "" until created there. */
  engineId: string;
  spec: ContainerSpec;
  status: ContainerStatus;
  health: "" | "starting" | "healthy" | "unhealthy";
  detail: string;
  desiredState: "running" | "stopped";
  node: string;
  createdAt: number;
  startedAt: number;
  exitCode: number;
  restartCount: number;
  /** Ports as bound by the engine. */
  ports: PortSpec[];
  /** From the node's GPU ledger shared with VMs (GpuAllocation.vm holds the container's name). */
  gpus: GpuAllocation[];
  imageId: string;
  group?: string;
  requestId?: string;
}

/** One change of a record on this node: created (no previous), updated, deleted (no now). */
export interface ContainerChange { name: string; previous?: ContainerRecord; now?: ContainerRecord; by: ContainerTrigger }

export interface CreateOptions { noStart?: boolean; group?: string; requestId?: string; by?: ContainerTrigger; registryPassword?: string }
