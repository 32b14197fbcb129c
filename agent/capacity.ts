/**
 * What this node has: CPUs, memory, the disk under the data dir, GPUs. Read
 * with systeminformation (GPU probing can be slow or fail on odd hosts, so it
 * is time-boxed and optional).
 */
import { statfs } from "node:fs/promises";
import os from "node:os";
import si from "systeminformation";

import type { CapacityInfo, GpuInfo } from "../core/index.js";

async function withTimeout<T>(p: Promise<T>, ms: number, fallback: T): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const r = await Promise.race([p.catch(() => fallback), new Promise<T>((res) => { t = setTimeout(() => res(fallback), ms); })]);
  clearTimeout(t);
  return r;
}

// CPUs and GPUs do not change while the agent runs: probe them once, re-read only memory and disk.
let gpuCache: GpuInfo[] | undefined;
let cpuCache: Awaited<ReturnType<typeof si.cpu>> | undefined;

/**
 * What Node knows without probing (no CPU model, no GPUs yet): the reading the first subsystem,
 * membership, starts with, so the gossip start never waits on the first probe (~0.4 s, up to 3 s).
 */
export async function quickCapacity(dataDir: string): Promise<CapacityInfo> {
  const fs = await statfs(dataDir).catch(() => undefined);
  return {
    cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? "unknown",
    memoryBytes: os.totalmem(), memoryFreeBytes: os.freemem(),
    diskBytes: fs ? fs.blocks * fs.bsize : 0, diskFreeBytes: fs ? fs.bavail * fs.bsize : 0,
    gpus: [],
  };
}

export async function readCapacity(dataDir: string): Promise<CapacityInfo> {
  const [cpu, mem, fs, gpus] = await Promise.all([
    cpuCache ? Promise.resolve(cpuCache) : withTimeout(si.cpu(), 2000, undefined),
    withTimeout(si.mem(), 2000, undefined),
    statfs(dataDir).catch(() => undefined),
    gpuCache ? Promise.resolve(gpuCache) : withTimeout(si.graphics().then((g) => g.controllers
      .filter((c) => /nvidia|amd|ati|intel/i.test(c.vendor) && !/virtio|qxl|cirrus|vmware|bochs/i.test(c.model))
      .map((c) => ({ vendor: c.vendor, model: c.model, pciAddress: c.pciBus ?? "", memoryBytes: (c.vram ?? 0) * 1024 * 1024 }))), 3000, [] as GpuInfo[]),
  ]);
  gpuCache = gpus;
  cpuCache ??= cpu;
  return {
    cpus: cpu?.cores || os.cpus().length,
    cpuModel: cpu ? `${cpu.manufacturer} ${cpu.brand}`.trim() : os.cpus()[0]?.model ?? "unknown",
    memoryBytes: mem?.total ?? os.totalmem(),
    memoryFreeBytes: mem?.available ?? os.freemem(),
    diskBytes: fs ? fs.blocks * fs.bsize : 0,
    diskFreeBytes: fs ? fs.bavail * fs.bsize : 0,
    gpus,
  };
}
