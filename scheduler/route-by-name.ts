/**
 * What VmService and ContainerService routing (routing.ts, container-routing.ts)
 * share: a call naming a VM or container goes to the node the VM table says
 * runs it, marked as routed so the node serving it never routes it again; a
 * name of the other kind, or of a node that is down, is refused saying so; a
 * forced delete of an entry whose node is down removes the table entry at
 * once and leaves an eviction the node carries out when it returns
 * (entry-publisher.ts); a cluster listing may be narrowed to one node.
 */
import type { ClusterView } from "../cluster/index.js";
import { ThocError } from "../errors/index.js";
import { describeCaller, type CallContext } from "../rpc/index.js";
import { isContainer, type VmEntry, type VmTables } from "./vm-table.js";

export const ROUTED_HEADER = "x-thoc-routed";
/** Who the routing node served (its audit names them); the serving node records it beside the routing node. */
export const ON_BEHALF_HEADER = "x-thoc-on-behalf-of";

/** True for a call another node routed here (it was authorized there). */
export function isRouted(ctx: CallContext, dev: boolean): boolean {
  if (!ctx.metadata.get(ROUTED_HEADER).length) return false;
  return dev || ctx.caller.kind === "node";
}

/** A kind of named entry as messages name it. */
export interface RouteKind {
  /** In messages ("VM", "container"). */
  word: string;
  /** The error detail naming the entry ("vm", "container"). */
  field: string;
  /** The CLI command of the kind ("vm", "ct"). */
  cli: string;
  is(e: VmEntry): boolean;
}

export const VM_ROUTE: RouteKind = { word: "VM", field: "vm", cli: "vm", is: (e) => !isContainer(e) };
export const CONTAINER_ROUTE: RouteKind = { word: "container", field: "container", cli: "ct", is: isContainer };

/** What either routing knows of the cluster. */
export interface RoutingBase {
  self: { id: string; name: string };
  tables: VmTables;
  view: ClusterView;
  /** Display name of a node id (membership), for messages and NODE columns. */
  nodeName(id: string): string;
  /** Since when a down node is down (ms), for messages; undefined when unknown. */
  downSince(id: string): number | undefined;
  dev: boolean;
}

export interface RouteByNameOptions extends RoutingBase {
  kind: RouteKind;
  /** The kind named in refusals of a name that is of the other kind. */
  other: RouteKind;
  /** Whether this node holds a record of that name. */
  here(name: string): Promise<boolean>;
}

export interface RouteByName {
  /** Where a named entry lives: "local", or the node id to route to; throws invalid_argument / not_found / unavailable. */
  locate(name: string, ctx: CallContext): Promise<"local" | string>;
  /** Call options of a routed stream: the routing marks, the caller's signal. */
  meta(ctx: CallContext): { metadata: Record<string, string>; signal: AbortSignal };
  /** Call options of a routed unary call: the stream's, and the caller's remaining time. */
  opts(ctx: CallContext): { metadata: Record<string, string>; signal: AbortSignal; timeoutMs?: number };
  /**
   * A forced delete, not routed here, of an entry of this kind on another
   * node that is down: the entry goes now, with an eviction (`extra` added to
   * it) the node carries out when it returns. The entry removed; undefined
   * when this is not such a delete (the call then goes where locate() says).
   */
  evictFromDownNode(name: string, ctx: CallContext, extra?: Record<string, unknown>): Promise<VmEntry | undefined>;
  /** Narrows a cluster listing to one node (id or name); not_found for a node the cluster does not know. */
  onNode<T extends { node?: string; nodeId?: string }>(items: T[], want: string): T[];
}

export function routeByName(o: RouteByNameOptions): RouteByName {
  const { kind, other } = o;
  // The same request id on both nodes ties their audit lines together.
  const marks = (ctx: CallContext) => ({ [ROUTED_HEADER]: o.self.id, [ON_BEHALF_HEADER]: describeCaller(ctx.caller).slice(0, 200), "x-request-id": ctx.requestId });
  const meta = (ctx: CallContext) => ({ metadata: marks(ctx), signal: ctx.signal });
  return {
    meta,
    opts: (ctx) => ({ ...meta(ctx), ...(Number.isFinite(ctx.timeRemaining()) ? { timeoutMs: Math.max(1, ctx.timeRemaining()) } : {}) }),
    async locate(name, ctx) {
      if (!name) throw new ThocError("invalid_argument", "name: missing");
      if (isRouted(ctx, o.dev)) return "local";
      if (await o.here(name)) return "local";
      const e = await o.tables.lookup(name);
      if (e && !kind.is(e)) throw new ThocError("not_found", `no ${kind.word} named ${name}: ${name} is a ${other.word} (thoc-node ${other.cli} show ${name})`, { [kind.field]: name });
      if (!e || e.nodeId === o.self.id) throw new ThocError("not_found", `no ${kind.word} named ${name} in the cluster (thoc-node ${kind.cli} list)`, { [kind.field]: name });
      if (!o.view.isUp(e.nodeId)) {
        const since = o.downSince(e.nodeId);
        throw new ThocError("unavailable", `${kind.word} ${name} is on node ${o.nodeName(e.nodeId)}, which is down${since ? ` (since ${new Date(since).toISOString()})` : ""}: try again when it is back (${kind.cli} delete --force removes the record; the node deletes the ${kind.word} when it returns)`, { [kind.field]: name, node: o.nodeName(e.nodeId) });
      }
      return e.nodeId;
    },
    async evictFromDownNode(name, ctx, extra = {}) {
      if (isRouted(ctx, o.dev) || await o.here(name)) return undefined;
      const e = await o.tables.lookup(name);
      if (!e || !kind.is(e) || e.nodeId === o.self.id || o.view.isUp(e.nodeId)) return undefined;
      await o.tables.evictions.put(e.name, JSON.stringify({ nodeId: e.nodeId, uuid: e.uuid, atMs: Date.now(), ...extra }));
      await o.tables.vms.put(e.name, null);
      return e;
    },
    onNode(items, want) {
      if (![o.self.id, o.self.name, ...o.tables.hostsNow().flatMap((h) => [h.id, h.name])].includes(want)) {
        throw new ThocError("not_found", `no node ${want} in the cluster (thoc-node members)`, { node: want });
      }
      return items.filter((c) => c.node === want || c.nodeId === want);
    },
  };
}

/**
 * A request stream whose first message says where it goes: that message is
 * read here, and the stream it returns yields it again, then the rest, for
 * whichever node serves the call. Undefined for a stream that ends at once.
 */
export async function peekFirst<T>(reqs: AsyncIterable<T>): Promise<{ first: T; all: AsyncIterable<T> } | undefined> {
  const it = reqs[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done) return undefined;
  const all = (async function* () {
    yield first.value;
    for (let n = await it.next(); !n.done; n = await it.next()) yield n.value;
  })();
  return { first: first.value, all };
}
