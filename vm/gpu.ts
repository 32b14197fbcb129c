/**
 * GPUs: the host's PCI display controllers from libvirt node devices, the MIG
 * profiles of the models that have them, and the node's allocation ledger so
 * a device (or a MIG slice beyond the GPU's 7) is never given twice.
 */
import { XMLParser } from "fast-xml-parser";
import { ThocError } from "../errors/index.js";
import type { GpuSpec } from "./spec.js";

export interface HostGpu {
  /** GPU-0, GPU-1... in PCI address order. */
  id: string;
  pciAddress: string;
  /** libvirt node device name (pci_0000_3b_00_0). */
  nodeDevice: string;
  vendor: string;
  vendorId: string;
  model: string;
  productId: string;
  /** A100-40GB, H100-80GB...; "" when the model has no MIG. */
  migModel: string;
}

/**
 * MIG profiles per model: name -> compute slices (of 7). Memory slices scale
 * with the model, which is why the same "1g" is 5gb on an A100-40GB and 10gb
 * on an H100-80GB (NVIDIA MIG user guide, supported profiles).
 */
export const MIG_PROFILES: Record<string, Record<string, number>> = {
  "A100-40GB": { "1g.5gb": 1, "1g.10gb": 1, "2g.10gb": 2, "3g.20gb": 3, "4g.20gb": 4, "7g.40gb": 7 },
  "A100-80GB": { "1g.10gb": 1, "1g.20gb": 1, "2g.20gb": 2, "3g.40gb": 3, "4g.40gb": 4, "7g.80gb": 7 },
  "H100-80GB": { "1g.10gb": 1, "1g.20gb": 1, "2g.20gb": 2, "3g.40gb": 3, "4g.40gb": 4, "7g.80gb": 7 },
  "H100-94GB": { "1g.12gb": 1, "1g.24gb": 1, "2g.24gb": 2, "3g.47gb": 3, "4g.47gb": 4, "7g.94gb": 7 },
  "H200-141GB": { "1g.18gb": 1, "1g.35gb": 1, "2g.35gb": 2, "3g.71gb": 3, "4g.71gb": 4, "7g.141gb": 7 },
  "A30-24GB": { "1g.6gb": 1, "2g.12gb": 2, "4g.24gb": 4 },
};
export const MIG_SLICES = 7;

/** NVIDIA PCI device ids of MIG-capable GPUs (pci.ids). */
const MIG_BY_PRODUCT_ID: Record<string, string> = {
  "0x20b0": "A100-40GB", "0x20f1": "A100-40GB", "0x20b1": "A100-40GB",
  "0x20b2": "A100-80GB", "0x20b5": "A100-80GB", "0x20f3": "A100-80GB",
  "0x2330": "H100-80GB", "0x2331": "H100-80GB", "0x2339": "H100-94GB", "0x2321": "H100-94GB",
  "0x2335": "H200-141GB", "0x20b7": "A30-24GB",
};

/** Emulated display adapters that are never passed through: bochs, virtio, qxl, cirrus, VMware, ASPEED BMC. */
const EMULATED_VENDORS = new Set(["0x1234", "0x1af4", "0x1b36", "0x1013", "0x15ad", "0x1a03"]);

function migModelOf(productId: string, product: string): string {
  if (MIG_BY_PRODUCT_ID[productId]) return MIG_BY_PRODUCT_ID[productId]!;
  const p = product.toUpperCase();
  const mem = /(\d+)\s*GB/.exec(p)?.[1];
  if (/A100/.test(p)) return mem === "80" ? "A100-80GB" : "A100-40GB";
  if (/H200/.test(p)) return "H200-141GB";
  if (/H100/.test(p)) return mem === "94" ? "H100-94GB" : "H100-80GB";
  if (/A30\b/.test(p)) return "A30-24GB";
  return "";
}

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: "@", textNodeName: "#text" });
const txt = (v: unknown): string => (v === undefined || v === null ? "" : typeof v === "object" ? String((v as Record<string, unknown>)["#text"] ?? "") : String(v));
const attr = (v: unknown, a: string): string => (v && typeof v === "object" ? String((v as Record<string, unknown>)[`@${a}`] ?? "") : "");

/** GPUs among libvirt PCI node-device XML documents. */
export function parseGpus(xmls: string[]): HostGpu[] {
  const out: Omit<HostGpu, "id">[] = [];
  for (const xml of xmls) {
    const dev = (parser.parse(xml) as { device?: Record<string, unknown> }).device;
    if (!dev) continue;
    const caps = ([] as unknown[]).concat(dev.capability ?? []);
    const cap = caps.find((c) => attr(c, "type") === "pci") as Record<string, unknown> | undefined;
    if (!cap) continue;
    const cls = Number(txt(cap.class));
    // PCI base class 0x03: display controllers (VGA 0x0300, 3D 0x0302).
    if (!Number.isFinite(cls) || cls >> 16 !== 0x03) continue;
    const vendorId = attr(cap.vendor, "id").toLowerCase();
    if (EMULATED_VENDORS.has(vendorId)) continue;
    const hex = (n: string, w: number) => Number(n).toString(16).padStart(w, "0");
    const pciAddress = `${hex(txt(cap.domain), 4)}:${hex(txt(cap.bus), 2)}:${hex(txt(cap.slot), 2)}.${hex(txt(cap.function), 1)}`;
    const productId = attr(cap.product, "id").toLowerCase();
    const model = txt(cap.product) || productId;
    out.push({
      pciAddress, nodeDevice: txt(dev.name), vendor: txt(cap.vendor) || vendorId, vendorId, model, productId,
      migModel: vendorId === "0x10de" ? migModelOf(productId, model) : "",
    });
  }
  out.sort((a, b) => a.pciAddress.localeCompare(b.pciAddress));
  return out.map((g, i) => ({ id: `GPU-${i}`, ...g }));
}

/** What a VM (or a container: `vm` is then its name) holds: whole GPUs (passthrough) or one MIG slice of a GPU. */
export interface GpuAllocation { vm: string; mode: "passthrough" | "mig"; pciAddress: string; migProfile?: string; slices?: number; mdevUuid?: string }

/** An allocation as the ledger holds it: by a VM, or by a container (kind "container"), which messages name as such. */
export type GpuHolding = GpuAllocation & { kind?: "container" };

/** The holders in messages, by kind: "VM a, b", "container c", "VM a and container c". */
function holdersOf(h: readonly GpuHolding[]): string {
  const vms = [...new Set(h.filter((a) => a.kind !== "container").map((a) => a.vm))];
  const cts = [...new Set(h.filter((a) => a.kind === "container").map((a) => a.vm))];
  return [vms.length ? `VM ${vms.join(", ")}` : "", cts.length ? `container ${cts.join(", ")}` : ""].filter(Boolean).join(" and ");
}

/**
 * The allocation decision, as a pure function of the inventory and the
 * allocations already made: which devices a request gets, or why not.
 */
export function allocateGpus(req: GpuSpec, vm: string, gpus: HostGpu[], taken: readonly GpuHolding[], newUuid: () => string): GpuAllocation[] {
  const find = (id: string) => gpus.find((g) => g.id === id || g.pciAddress === id || g.pciAddress === `0000:${id}` || g.nodeDevice === id);
  const holder = (pci: string) => taken.filter((a) => a.pciAddress === pci && a.vm !== vm);
  if (req.mode === "passthrough") {
    return req.deviceIds.map((id) => {
      const g = find(id);
      if (!g) throw new ThocError("not_found", `gpu.deviceIds: no GPU "${id}" on this node (it has ${gpus.length ? gpus.map((x) => `${x.id}=${x.pciAddress}`).join(", ") : "none"}); see thoc-node vm gpus`, { field: "gpu.deviceIds" });
      const h = holder(g.pciAddress);
      if (h.length) {
        const who = [...new Set(h.map((a) => a.vm))].join(", ");
        throw new ThocError("resource_exhausted", `GPU ${g.id} (${g.pciAddress}) is already assigned to ${holdersOf(h)}: pick a free GPU (thoc-node vm gpus) or delete ${who}`, { gpu: g.pciAddress, holder: who });
      }
      return { vm, mode: "passthrough" as const, pciAddress: g.pciAddress };
    });
  }
  const profile = req.migProfile;
  const candidates = req.deviceIds.length ? req.deviceIds.map((id) => {
    const g = find(id);
    if (!g) throw new ThocError("not_found", `gpu.deviceIds: no GPU "${id}" on this node; see thoc-node vm gpus`, { field: "gpu.deviceIds" });
    return g;
  }) : gpus;
  const migGpus = candidates.filter((g) => g.migModel);
  if (!migGpus.length) throw new ThocError("invalid_argument", `gpu.migProfile: no MIG-capable GPU ${req.deviceIds.length ? `among ${req.deviceIds.join(", ")}` : "on this node"} (MIG needs an A100, A30, H100 or H200)`, { field: "gpu.migProfile" });
  const fitting = migGpus.filter((g) => MIG_PROFILES[g.migModel]![profile] !== undefined);
  if (!fitting.length) {
    const models = [...new Set(migGpus.map((g) => g.migModel))];
    throw new ThocError("invalid_argument", `gpu.migProfile: ${profile} is not a MIG profile of ${models.join(" or ")}: use one of ${models.map((m) => Object.keys(MIG_PROFILES[m]!).join(", ")).join(" / ")}`, { field: "gpu.migProfile" });
  }
  for (const g of fitting) {
    const slices = MIG_PROFILES[g.migModel]![profile]!;
    const used = holder(g.pciAddress).reduce((n, a) => n + (a.mode === "passthrough" ? MIG_SLICES : a.slices ?? 0), 0);
    if (used + slices <= MIG_SLICES) return [{ vm, mode: "mig", pciAddress: g.pciAddress, migProfile: profile, slices, mdevUuid: newUuid() }];
  }
  const held = taken.filter((a) => fitting.some((g) => g.pciAddress === a.pciAddress));
  const what = held.length && held.every((a) => a.kind === "container") ? "a container" : held.some((a) => a.kind === "container") ? "a VM or a container" : "a VM";
  throw new ThocError("resource_exhausted", `no GPU has room for a ${profile} slice: every MIG-capable GPU's ${MIG_SLICES} compute slices are taken (${fitting.map((g) => `${g.id}: ${holdersOf(taken.filter((a) => a.pciAddress === g.pciAddress)) || "-"}`).join("; ")}); delete ${what} or pick a smaller profile`, { profile });
}
