/** VmService and ImageService: protobuf in, VmManager / ImageStore calls, protobuf out. */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { ThocError } from "../errors/index.js";
import type { ImplOf } from "../rpc/index.js";
import { ImageService, VmService, type VmSpec as PbVmSpec, type ImageSchema, type VmSchema, type SnapshotSchema, type VmMetricsSchema } from "../proto/index.js";
import type { SnapshotInfo } from "../hypervisor/index.js";
import { guestAddresses } from "./addresses.js";
import { MIG_PROFILES, MIG_SLICES } from "./gpu.js";
import { IMAGE_PARTS, type ImagePart, type ImageRecord, type ImageStore } from "./images.js";
import type { VmManager, VmRecord } from "./manager.js";
import { createSnapshot, deleteSnapshot, listSnapshots, openConsole, readLog, restoreSnapshot, vmMetrics, type VmMetricsReading } from "./ops.js";
import { autostartOf, type VmSpec, type VmSpecInput } from "./spec.js";
import type { VncTokens } from "./vnc.js";

export function specFromPb(s: PbVmSpec | undefined): VmSpecInput {
  if (!s) throw new ThocError("invalid_argument", "spec: missing: give the VM's name, image, vcpus, ramMb and diskGb");
  return {
    name: s.name, image: s.image, vcpus: s.vcpus, ramMB: s.ramMb, diskGB: s.diskGb,
    gpu: s.gpu ? { enabled: s.gpu.enabled, mode: s.gpu.mode as "passthrough", deviceIds: s.gpu.deviceIds, migProfile: s.gpu.migProfile } : undefined,
    network: s.network ? { mode: (s.network.mode || undefined) as "bridge-vlan", ipMode: (s.network.ipMode || undefined) as "dhcp", ipAddress: s.network.ipAddress, netmask: s.network.netmask, gateway: s.network.gateway, vlanId: s.network.vlanId, bridge: s.network.bridge } : undefined,
    cloudInit: s.cloudInit ? { hostname: s.cloudInit.hostname, sshPublicKey: s.cloudInit.sshPublicKey, username: s.cloudInit.username, password: s.cloudInit.password } : undefined,
    autostart: s.autostart,
  };
}

function specToPb(s: VmSpec): MessageInitShape<typeof VmSchema>["spec"] {
  return {
    name: s.name, image: s.image, vcpus: s.vcpus, ramMb: s.ramMB, diskGb: s.diskGB,
    gpu: s.gpu ? { enabled: true, mode: s.gpu.mode, deviceIds: s.gpu.deviceIds, migProfile: s.gpu.migProfile } : undefined,
    network: { ...s.network },
    // The password never leaves the agent, not even hashed.
    cloudInit: s.cloudInit ? { ...s.cloudInit, password: "" } : undefined,
    autostart: autostartOf(s),
  };
}

export function vmToPb(r: VmRecord): MessageInitShape<typeof VmSchema> {
  return {
    name: r.name, uuid: r.uuid, status: r.status, spec: specToPb(r.spec), node: r.node, domain: r.domain,
    createdAtMs: BigInt(r.createdAt), macAddress: r.spec.network.mode === "none" ? "" : r.mac,
    gpuDevices: r.gpus.map((g) => (g.mode === "mig" ? `${g.pciAddress}/${g.migProfile}` : g.pciAddress)),
    imageKind: r.imageKind, detail: r.detail, passwordSet: r.passwordSet, group: r.group ?? "",
    desiredState: r.desired ?? "", autostartError: r.autostartError ?? "",
  };
}

/** vmToPb with the guest's addresses, asked of libvirt now (only a running guest has any). */
async function vmWithAddresses(m: VmManager, r: VmRecord): Promise<MessageInitShape<typeof VmSchema>> {
  return { ...vmToPb(r), ipAddresses: r.status === "running" ? await guestAddresses(m.o.hv, r.domain) : [] };
}

const snapToPb = (s: SnapshotInfo): MessageInitShape<typeof SnapshotSchema> =>
  ({ name: s.name, description: s.description, createdAtMs: BigInt(s.createdAt * 1000), vmState: s.state });

export const metricsToPb = (m: VmMetricsReading, name: string): MessageInitShape<typeof VmMetricsSchema> => ({
  name, state: m.state, vcpus: m.vcpus, cpuSeconds: m.cpuTimeNs / 1e9, cpuPercent: m.cpuPercent,
  memoryBytes: BigInt(m.memoryKiB * 1024), memoryUsedBytes: BigInt(Math.max(0, m.memoryUsedKiB) * 1024),
  netRxBytes: BigInt(m.netRxBytes), netTxBytes: BigInt(m.netTxBytes), diskReadBytes: BigInt(m.blockReadBytes), diskWriteBytes: BigInt(m.blockWriteBytes),
  diskCapacityBytes: BigInt(m.diskCapacityBytes), diskAllocationBytes: BigInt(m.diskAllocationBytes), timestampMs: BigInt(m.timestamp),
});

const need = (v: string, what: string) => {
  if (!v) throw new ThocError("invalid_argument", `${what}: missing`);
  return v;
};

export function vmService(m: VmManager, opts: { statsTimeoutMs: number; vnc?: VncTokens }): ImplOf<typeof VmService> {
  return {
    async createVm(req) { return { vm: vmToPb(await m.create(specFromPb(req.spec), { start: !req.noStart })) }; },
    async listVms() { return { vms: await Promise.all((await m.list()).map((r) => vmWithAddresses(m, r))) }; },
    async getVm(req) { return { vm: await vmWithAddresses(m, await m.refreshStatus(need(req.name, "name")).catch(() => m.get(req.name))) }; },
    async startVm(req) { return { vm: vmToPb(await m.startVm(need(req.name, "name"))) }; },
    async stopVm(req) { return { vm: vmToPb(await m.stopVm(need(req.name, "name"), { force: req.force, timeoutMs: req.timeoutMs })) }; },
    async restartVm(req) { return { vm: vmToPb(await m.restartVm(need(req.name, "name"), { force: req.force, timeoutMs: req.timeoutMs })) }; },
    async deleteVm(req) { await m.deleteVm(need(req.name, "name")); return { name: req.name }; },
    async createSnapshot(req) { return { snapshot: snapToPb(await createSnapshot(m, need(req.vm, "vm"), req.name, req.description)) }; },
    async listSnapshots(req) { return { snapshots: (await listSnapshots(m, need(req.name, "name"))).map(snapToPb) }; },
    async restoreSnapshot(req) { return { vm: vmToPb(await restoreSnapshot(m, need(req.vm, "vm"), need(req.name, "snapshot name"))) }; },
    async deleteSnapshot(req) { await deleteSnapshot(m, need(req.vm, "vm"), need(req.name, "snapshot name")); return {}; },
    async *console(reqs, ctx) {
      const it = reqs[Symbol.asyncIterator]();
      const first = await it.next();
      if (first.done) return;
      const con = await openConsole(m, need(first.value.name, "name"));
      const pump = (async () => {
        try {
          if (first.value.data.length) await con.write(first.value.data);
          for (let n = await it.next(); !n.done; n = await it.next()) if (n.value.data.length) await con.write(n.value.data);
        } catch { /* client went away */ }
        await con.close();
      })();
      ctx.signal.addEventListener("abort", () => { void con.close(); });
      try {
        for await (const data of con.output()) yield { data };
      } finally {
        await con.close();
        void pump;
      }
    },
    async *logs(req, ctx) {
      for await (const data of readLog(m, need(req.name, "name"), { follow: req.follow, tailBytes: Number(req.tailBytes), signal: ctx.signal })) yield { data };
    },
    async getMetrics(req) { return metricsToPb(await vmMetrics(m, need(req.name, "name"), opts.statsTimeoutMs), req.name); },
    async listGpus() {
      const [gpus, allocs] = [await m.gpus(0), await m.allocations()];
      return {
        gpus: gpus.map((g) => {
          const mine = allocs.filter((a) => a.pciAddress === g.pciAddress);
          return {
            id: g.id, pciAddress: g.pciAddress, vendor: g.vendor, model: g.model, migModel: g.migModel,
            migProfiles: g.migModel ? Object.keys(MIG_PROFILES[g.migModel]!) : [],
            assignedTo: [...new Set(mine.map((a) => a.vm))],
            migSlicesUsed: mine.reduce((n, a) => n + (a.mode === "mig" ? a.slices ?? 0 : MIG_SLICES), 0),
          };
        }),
      };
    },
    async setVmAutostart(req) { return { vm: vmToPb(await m.setAutostart(need(req.name, "name"), req.autostart)) }; },
    async getVncToken(req) {
      const r = await m.get(need(req.name, "name"));
      if (!opts.vnc) throw new ThocError("unimplemented", "the VNC WebSocket is not enabled on this agent");
      const t = opts.vnc.issue(r.name);
      return { url: t.url, token: t.token, expiresAtMs: BigInt(t.expiresAt) };
    },
  };
}

export function imageToPb(r: ImageRecord, usedBy: string[]): MessageInitShape<typeof ImageSchema> {
  return {
    name: r.name, kind: r.kind, cmdline: r.cmdline, virtualSize: BigInt(r.virtualSize), createdAtMs: BigInt(r.createdAt), usedBy,
    files: r.files.map((f) => ({ part: f.part, size: BigInt(f.size), sha256: f.sha256, format: f.format })),
  };
}

export function imageService(images: ImageStore, m: VmManager): ImplOf<typeof ImageService> {
  const usedBy = async (name: string) => (await m.list()).filter((r) => r.spec.image === name).map((r) => r.name);
  return {
    async importImage(chunks) {
      let w: Awaited<ReturnType<ImageStore["begin"]>> | undefined;
      let name = "";
      try {
        for await (const c of chunks) {
          if (!w) {
            if (!c.meta) throw new ThocError("invalid_argument", "the first message must carry the image meta (name)");
            name = c.meta.name;
            if ((await usedBy(name)).length && c.meta.replace) throw new ThocError("failed_precondition", `image ${name} is in use by VMs (${(await usedBy(name)).join(", ")}): it cannot be replaced`);
            w = await images.begin(name, { cmdline: c.meta.cmdline, replace: c.meta.replace, sha256: c.meta.sha256 as Partial<Record<ImagePart, string>> });
          }
          if (c.data.length) {
            if (!IMAGE_PARTS.includes(c.part as ImagePart)) throw new ThocError("invalid_argument", `part "${c.part}": use disk, kernel or initrd`);
            await w.write(c.part as ImagePart, c.data);
          }
        }
        if (!w) throw new ThocError("invalid_argument", "no image sent");
        const rec = await w.commit();
        w = undefined;
        return { image: imageToPb(rec, []) };
      } catch (err) {
        await w?.abort();
        throw err;
      }
    },
    async listImages() {
      return { images: await Promise.all((await images.list()).map(async (r) => imageToPb(r, await usedBy(r.name)))) };
    },
    async getImage(req) {
      const r = await images.get(req.name);
      if (!r) throw new ThocError("not_found", `image ${req.name} is not on this node (thoc-node image list)`);
      return { image: imageToPb(r, await usedBy(r.name)) };
    },
    async deleteImage(req) {
      const users = await usedBy(req.name);
      if (users.length) throw new ThocError("failed_precondition", `image ${req.name} is the base of VMs ${users.join(", ")}: delete them first`, { image: req.name });
      await images.delete(req.name);
      return {};
    },
  };
}
