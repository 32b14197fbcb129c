/**
 * VmService as every agent serves it: the cluster as one computer. A call
 * about a VM goes to the node that runs it (the VM table says which) over
 * the authenticated peer transport, streams (console, logs) included; a
 * create goes to the scheduler leader; a listing shows the whole cluster.
 *
 * A call routed here by another node (x-thoc-routed, from a node
 * certificate, or --dev) is served from this node's own records and never
 * routed again, so a stale table entry cannot make calls loop. Container
 * entries of the table are not VMs (container-routing.ts serves them); what
 * both routings share is route-by-name.ts's.
 */
import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { PeerPool } from "../cluster/index.js";
import { ThocError } from "../errors/index.js";
import type { VmService, VmSchema, CreateVmRequest, VmResponseSchema } from "../proto/index.js";
import type { CallContext, Client, ImplOf } from "../rpc/index.js";
import { domainName, type VmManager } from "../vm/index.js";
import { CONTAINER_ROUTE, isRouted, peekFirst, routeByName, VM_ROUTE, type RoutingBase } from "./route-by-name.js";
import { isContainer, type VmEntry } from "./vm-table.js";

export { isRouted, ON_BEHALF_HEADER, ROUTED_HEADER } from "./route-by-name.js";

type VmImpl = ImplOf<typeof VmService>;
export type VmClient = Client<typeof VmService.method>;
type VmInit = MessageInitShape<typeof VmSchema>;

export interface RoutingOptions extends RoutingBase {
  local: VmImpl;
  manager: VmManager;
  peers: PeerPool<typeof VmService.method, VmClient>;
  /** The create path: place through the leader (here or forwarded). */
  create(req: CreateVmRequest, ctx: CallContext): Promise<MessageInitShape<typeof VmResponseSchema>>;
}

/** A VM table entry as a Vm message, for VMs answered from the table. */
export function entryToPb(e: VmEntry, nodeUp: boolean, nodeName: string): VmInit {
  return {
    name: e.name, uuid: e.uuid, status: nodeUp ? e.status : "unknown", node: nodeName || e.nodeName, nodeId: e.nodeId, domain: domainName(e.name),
    createdAtMs: BigInt(e.createdAt), macAddress: e.mac, imageKind: e.imageKind, group: e.group,
    detail: nodeUp ? e.detail : `node ${nodeName || e.nodeName} is down: last known status ${e.status}`,
    spec: { name: e.name, image: e.image, vcpus: e.vcpus, ramMb: e.ramMB, diskGb: e.diskGB },
    gpuDevices: e.gpus.map((g) => (g.mode === "mig" ? `${g.pciAddress}/${g.migProfile}` : g.pciAddress)),
  };
}

/** How long a cluster `vm list` waits for other nodes' guest addresses (libvirt caps each lookup at 2 s). */
const ADDRESS_WAIT_MS = 3000;

export function routedVmService(o: RoutingOptions): VmImpl {
  const { local } = o;
  const { locate, meta, opts, evictFromDownNode, onNode } = routeByName({
    ...o, kind: VM_ROUTE, other: CONTAINER_ROUTE, here: (name) => o.manager.get(name).then(() => true, () => false),
  });
  const peer = (id: string) => o.peers.get(id);
  /**
   * Guest IPs are read from each node's libvirt at list time, not kept in the VM table (they change
   * without the record changing), so a cluster listing asks every live node holding VMs for its
   * own, in parallel and briefly: a slow or failing node's VMs are listed without addresses rather
   * than holding up or failing the listing. Keyed "<nodeId>/<vm name>".
   */
  const peerAddresses = async (nodeIds: string[], ctx: CallContext): Promise<Map<string, string[]>> => {
    const out = new Map<string, string[]>();
    const budget = Math.min(ADDRESS_WAIT_MS, Number.isFinite(ctx.timeRemaining()) ? Math.max(1, ctx.timeRemaining() / 2) : ADDRESS_WAIT_MS);
    await Promise.all(nodeIds.filter((id) => o.view.isUp(id)).map(async (id) => {
      try {
        const r = await peer(id).listVms({ local: true }, { ...meta(ctx), timeoutMs: budget });
        for (const v of r.vms ?? []) if (v.ipAddresses?.length) out.set(`${id}/${v.name}`, v.ipAddresses);
      } catch { /* listed from the table, without addresses */ }
    }));
    return out;
  };

  return {
    async createVm(req, ctx) {
      if (isRouted(ctx, o.dev)) throw new ThocError("failed_precondition", "a routed create is not a placement: creates go through the scheduler leader (SchedulerService.Commit)");
      if (!req.requestId) req.requestId = randomUUID();
      return o.create(req, ctx);
    },
    async listVms(req, ctx) {
      if (req.local || isRouted(ctx, o.dev)) {
        const r = await local.listVms(req, ctx);
        return { vms: (r.vms ?? []).map((v) => ({ ...v, nodeId: o.self.id })) };
      }
      const mine = ((await local.listVms(req, ctx)).vms ?? []).map((v) => ({ ...v, nodeId: o.self.id }));
      const names = new Set(mine.map((v) => v.name));
      const entries = (await o.tables.list()).filter((e) => !isContainer(e) && e.nodeId !== o.self.id && !names.has(e.name));
      const addresses = await peerAddresses([...new Set(entries.map((e) => e.nodeId))], ctx);
      const others = entries.map((e) => ({ ...entryToPb(e, o.view.isUp(e.nodeId), o.nodeName(e.nodeId)), ipAddresses: addresses.get(`${e.nodeId}/${e.name}`) ?? [] }));
      let vms: VmInit[] = [...mine, ...others];
      if (req.node) vms = onNode(vms, req.node);
      return { vms: vms.sort((a, b) => String(a.name).localeCompare(String(b.name))) };
    },
    async getVm(req, ctx) {
      const at = await locate(req.name, ctx);
      if (at === "local") return local.getVm(req, ctx);
      return peer(at).getVm(req, opts(ctx));
    },
    async startVm(req, ctx) { const at = await locate(req.name, ctx); return at === "local" ? local.startVm(req, ctx) : peer(at).startVm(req, opts(ctx)); },
    async stopVm(req, ctx) { const at = await locate(req.name, ctx); return at === "local" ? local.stopVm(req, ctx) : peer(at).stopVm(req, opts(ctx)); },
    async restartVm(req, ctx) { const at = await locate(req.name, ctx); return at === "local" ? local.restartVm(req, ctx) : peer(at).restartVm(req, opts(ctx)); },
    async deleteVm(req, ctx) {
      if (req.force) {
        // The record goes now; the node deletes the VM itself when it returns (publisher.ts).
        const e = await evictFromDownNode(req.name, ctx);
        if (e) return { name: e.name };
      }
      const at = await locate(req.name, ctx);
      return at === "local" ? local.deleteVm(req, ctx) : peer(at).deleteVm(req, opts(ctx));
    },
    async createSnapshot(req, ctx) { const at = await locate(req.vm, ctx); return at === "local" ? local.createSnapshot(req, ctx) : peer(at).createSnapshot(req, opts(ctx)); },
    async listSnapshots(req, ctx) { const at = await locate(req.name, ctx); return at === "local" ? local.listSnapshots(req, ctx) : peer(at).listSnapshots(req, opts(ctx)); },
    async restoreSnapshot(req, ctx) { const at = await locate(req.vm, ctx); return at === "local" ? local.restoreSnapshot(req, ctx) : peer(at).restoreSnapshot(req, opts(ctx)); },
    async deleteSnapshot(req, ctx) { const at = await locate(req.vm, ctx); return at === "local" ? local.deleteSnapshot(req, ctx) : peer(at).deleteSnapshot(req, opts(ctx)); },
    async *console(reqs, ctx) {
      const s = await peekFirst(reqs);
      if (!s) return;
      const at = await locate(s.first.name, ctx);
      if (at === "local") { yield* local.console(s.all, ctx); return; }
      yield* peer(at).console(s.all, meta(ctx));
    },
    async *logs(req, ctx) {
      const at = await locate(req.name, ctx);
      if (at === "local") { yield* local.logs(req, ctx); return; }
      yield* peer(at).logs(req, meta(ctx));
    },
    async getMetrics(req, ctx) { const at = await locate(req.name, ctx); return at === "local" ? local.getMetrics(req, ctx) : peer(at).getMetrics(req, opts(ctx)); },
    async listGpus(req, ctx) { return local.listGpus(req, ctx); },
    async setVmAutostart(req, ctx) { const at = await locate(req.name, ctx); return at === "local" ? local.setVmAutostart(req, ctx) : peer(at).setVmAutostart(req, opts(ctx)); },
    async getVncToken(req, ctx) { const at = await locate(req.name, ctx); return at === "local" ? local.getVncToken(req, ctx) : peer(at).getVncToken(req, opts(ctx)); },
  };
}
