/** What a node has (CPUs, memory, disk, GPUs): read by the agent, used by membership metadata and placement. */

export interface GpuInfo { vendor: string; model: string; pciAddress: string; memoryBytes: number }

export interface CapacityInfo {
  cpus: number;
  cpuModel: string;
  memoryBytes: number;
  memoryFreeBytes: number;
  diskBytes: number;
  diskFreeBytes: number;
  gpus: GpuInfo[];
}
