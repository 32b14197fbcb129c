/**
 * ContainerService as every agent serves it, like routing.ts for VMs: a
 * create goes to the scheduler leader, a call naming a container goes to the
 * node that runs it (the VM table says which; logs and exec stream through),
 * a listing shows the whole cluster. A call routed here by another node is
 * served from this node's own records and never routed again. Names in the
 * table that belong to VMs are not containers: such a call is not_found and
 * says so. Images and the runtime are this node's (the archives live in the
 * cluster's object store, so any node answers for them). What both routings
 * share is route-by-name.ts's.
 */
import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { PeerPool } from "../cluster/index.js";
import { ThocError } from "../errors/index.js";
import type { ContainerService, CreateContainerRequest, ContainerResponseSchema } from "../proto/index.js";
import type { CallContext, Client, ImplOf } from "../rpc/index.js";
import { containerEntryToPb, type ContainerInit, type ContainerNode } from "./container-table.js";
import { CONTAINER_ROUTE, isRouted, peekFirst, routeByName, VM_ROUTE, type RoutingBase } from "./route-by-name.js";
import { isContainer } from "./vm-table.js";

export type ContainerImpl = ImplOf<typeof ContainerService>;
export type ContainerClient = Client<typeof ContainerService.method>;

export interface ContainerRoutingOptions extends RoutingBase {
  local: ContainerImpl;
  node: () => ContainerNode | undefined;
  peers: PeerPool<typeof ContainerService.method, ContainerClient>;
  /** The create path: place through the leader (here or forwarded). */
  create(req: CreateContainerRequest, ctx: CallContext): Promise<MessageInitShape<typeof ContainerResponseSchema>>;
}

export function routedContainerService(o: ContainerRoutingOptions): ContainerImpl {
  const { local } = o;
  const here = async (name: string) => {
    const n = o.node();
    return n !== undefined && (await n.get(name).then(() => true, () => false));
  };
  const { locate, meta, opts, evictFromDownNode, onNode } = routeByName({ ...o, kind: CONTAINER_ROUTE, other: VM_ROUTE, here });
  const peer = (id: string) => o.peers.get(id);

  return {
    async createContainer(req, ctx) {
      if (isRouted(ctx, o.dev)) throw new ThocError("failed_precondition", "a routed create is not a placement: creates go through the scheduler leader (SchedulerService.CommitContainer)");
      if (!req.requestId) req.requestId = randomUUID();
      return o.create(req, ctx);
    },
    async listContainers(req, ctx) {
      const mine = ((await local.listContainers({ ...req, node: "", local: true }, ctx)).containers ?? []).map((c) => ({ ...c, nodeId: o.self.id }));
      if (req.local || isRouted(ctx, o.dev)) return { containers: mine };
      const names = new Set(mine.map((c) => c.name));
      const others = (await o.tables.list()).filter((e) => isContainer(e) && e.nodeId !== o.self.id && !names.has(e.name))
        .map((e) => containerEntryToPb(e, o.view.isUp(e.nodeId), o.nodeName(e.nodeId)));
      let all: ContainerInit[] = [...mine, ...others];
      if (req.node) all = onNode(all, req.node);
      return { containers: all.sort((a, b) => String(a.name).localeCompare(String(b.name))) };
    },
    async getContainer(req, ctx) { const at = await locate(req.name, ctx); return at === "local" ? local.getContainer(req, ctx) : peer(at).getContainer(req, opts(ctx)); },
    async startContainer(req, ctx) { const at = await locate(req.name, ctx); return at === "local" ? local.startContainer(req, ctx) : peer(at).startContainer(req, opts(ctx)); },
    async stopContainer(req, ctx) { const at = await locate(req.name, ctx); return at === "local" ? local.stopContainer(req, ctx) : peer(at).stopContainer(req, opts(ctx)); },
    async restartContainer(req, ctx) { const at = await locate(req.name, ctx); return at === "local" ? local.restartContainer(req, ctx) : peer(at).restartContainer(req, opts(ctx)); },
    async deleteContainer(req, ctx) {
      if (req.force) {
        // The record goes now; the node deletes the container itself when it returns (container-publisher.ts).
        const e = await evictFromDownNode(req.name, ctx, { kind: "container", keepVolumes: req.keepVolumes });
        if (e) return { name: e.name, volumesRemoved: [] };
      }
      const at = await locate(req.name, ctx);
      return at === "local" ? local.deleteContainer(req, ctx) : peer(at).deleteContainer(req, opts(ctx));
    },
    async *containerLogs(req, ctx) {
      const at = await locate(req.name, ctx);
      if (at === "local") { yield* local.containerLogs(req, ctx); return; }
      yield* peer(at).containerLogs(req, meta(ctx));
    },
    async *exec(reqs, ctx) {
      // The first message names the container; it and the rest (stdin, resizes) go on to wherever it runs.
      const s = await peekFirst(reqs);
      if (!s) return;
      const name = s.first.start?.name ?? "";
      if (!name) throw new ThocError("invalid_argument", "Exec: the first message must carry start (name, command)");
      const at = await locate(name, ctx);
      if (at === "local") { yield* local.exec(s.all, ctx); return; }
      yield* peer(at).exec(s.all, meta(ctx));
    },
    async containerStats(req, ctx) { const at = await locate(req.name, ctx); return at === "local" ? local.containerStats(req, ctx) : peer(at).containerStats(req, opts(ctx)); },
    importContainerImage(reqs, ctx) { return local.importContainerImage(reqs, ctx); },
    listContainerImages(req, ctx) { return local.listContainerImages(req, ctx); },
    deleteContainerImage(req, ctx) { return local.deleteContainerImage(req, ctx); },
    getContainerRuntime(req, ctx) { return local.getContainerRuntime(req, ctx); },
  };
}
