/**
 * GPUs for containers: the allocations the node's ledger (shared with VMs)
 * made, as the CDI device names the engine passes in (nvidia.com/gpu=N, N the
 * GPU's index among the node's NVIDIA GPUs in PCI order, as nvidia-ctk numbers
 * them).
 */
import { ThocError } from "../errors/index.js";
import type { GpuAllocation, HostGpu } from "../vm/index.js";

const NVIDIA = "0x10de";

export function gpuDevices(allocs: readonly GpuAllocation[], inventory: readonly HostGpu[]): string[] {
  const nvidia = inventory.filter((g) => g.vendorId === NVIDIA).sort((a, b) => a.pciAddress.localeCompare(b.pciAddress));
  return allocs.map((a) => {
    const i = nvidia.findIndex((g) => g.pciAddress === a.pciAddress);
    if (i < 0) {
      const g = inventory.find((x) => x.pciAddress === a.pciAddress);
      throw new ThocError("failed_precondition", `GPU ${g?.id ?? a.pciAddress} (${g?.vendor ?? "unknown vendor"}) is not an NVIDIA GPU: containers get GPUs through NVIDIA's CDI devices only; give it to a VM instead`, { gpu: a.pciAddress });
    }
    return `nvidia.com/gpu=${i}`;
  });
}
