/** ContainerRecord -> protobuf (Container), as every ContainerService answer and the scheduler's table carry it. */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ContainerSchema, ContainerSpecSchema, ContainerStatsResponseSchema } from "../proto/index.js";
import type { EngineStats } from "../engine/index.js";
import type { ContainerRecord, ContainerSpec } from "./types.js";

export function specToPb(s: ContainerSpec): MessageInitShape<typeof ContainerSpecSchema> {
  return {
    name: s.name, kind: s.kind, image: s.image, registry: s.registry,
    // The password was used for the pull and dropped: never stored, never returned.
    registryAuth: s.registryUser ? { username: s.registryUser, password: "" } : undefined,
    ports: s.ports.map((p) => ({ ...p })), volumes: s.volumes.map((v) => ({ ...v })), env: { ...s.env }, command: [...s.command],
    cpus: s.cpus, memoryMb: s.memoryMB, gpuDeviceIds: [...s.gpuDeviceIds], healthCheckPath: s.healthCheckPath,
    healthIntervalS: s.healthIntervalS, healthRetries: s.healthRetries, restartPolicy: s.restartPolicy,
    modelId: s.modelId, modelPath: s.modelPath, labels: { ...s.labels },
  };
}

export function containerToPb(r: ContainerRecord, nodeId = ""): MessageInitShape<typeof ContainerSchema> {
  return {
    name: r.name, id: r.engineId, status: r.status, spec: specToPb(r.spec), node: r.node, nodeId,
    createdAtMs: BigInt(r.createdAt), startedAtMs: BigInt(r.startedAt), exitCode: r.exitCode, restartCount: r.restartCount,
    health: r.health, detail: r.detail, ports: r.ports.map((p) => ({ ...p })),
    gpuDevices: r.gpus.map((g) => (g.mode === "mig" ? `${g.pciAddress}/${g.migProfile}` : g.pciAddress)),
    imageId: r.imageId, group: r.group ?? "", desiredState: r.desiredState, registryAuthSet: Boolean(r.spec.registryUser),
  };
}

export function statsToPb(name: string, s: EngineStats & { cpuPercent: number }): MessageInitShape<typeof ContainerStatsResponseSchema> {
  return {
    name, cpuPercent: s.cpuPercent, cpuSeconds: s.cpuSeconds, memoryBytes: BigInt(Math.round(s.memoryBytes)), memoryLimitBytes: BigInt(Math.round(s.memoryLimitBytes)),
    netRxBytes: BigInt(Math.round(s.netRxBytes)), netTxBytes: BigInt(Math.round(s.netTxBytes)),
    blockReadBytes: BigInt(Math.round(s.blockReadBytes)), blockWriteBytes: BigInt(Math.round(s.blockWriteBytes)),
    pids: s.pids, timestampMs: BigInt(Math.round(s.timestampMs)),
  };
}
