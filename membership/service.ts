/** ClusterService (ListMembers, WatchMembers) over a Membership. */
import type { ImplOf } from "../rpc/index.js";
import type { ClusterService } from "../proto/index.js";
import type { Membership } from "./types.js";
import type { Member, MemberEvent } from "./types.js";

function toProto(m: Member) {
  const x = m.meta;
  return {
    id: m.id, name: m.name, address: m.address, state: m.state, incarnation: BigInt(m.incarnation),
    stateChangedAtMs: BigInt(Math.floor(m.stateChangedAt)),
    meta: {
      version: x.version, grpcAddress: x.grpc, s3Address: x.s3, gossipAddress: x.gossip, cpus: x.cpus,
      memoryBytes: BigInt(Math.floor(x.memBytes)), memoryFreeBytes: BigInt(Math.floor(x.memFreeBytes)),
      diskBytes: BigInt(Math.floor(x.diskBytes)), diskFreeBytes: BigInt(Math.floor(x.diskFreeBytes)),
      gpus: x.gpus, tags: x.tags ?? {},
    },
  };
}

export function clusterService(ms: Membership): Pick<ImplOf<typeof ClusterService>, "listMembers" | "watchMembers"> {
  return {
    async listMembers() {
      return { members: ms.members().map(toProto), localId: ms.localId };
    },
    async *watchMembers(_req, ctx) {
      const queue: MemberEvent[] = [];
      let wake: (() => void) | undefined;
      const unsubscribe = ms.subscribe((e) => {
        queue.push(e);
        if (queue.length > 10_000) queue.splice(0, queue.length - 10_000); // a stalled watcher cannot grow memory forever
        wake?.();
      });
      const onAbort = () => wake?.();
      ctx.signal.addEventListener("abort", onAbort);
      try {
        for (const m of ms.members()) yield { type: "sync", member: toProto(m) };
        while (!ctx.signal.aborted) {
          if (queue.length === 0) await new Promise<void>((r) => { wake = r; });
          wake = undefined;
          while (queue.length > 0 && !ctx.signal.aborted) {
            const e = queue.shift()!;
            yield { type: e.type, member: toProto(e.member) };
          }
        }
      } finally {
        unsubscribe();
        ctx.signal.removeEventListener("abort", onAbort);
      }
    },
  };
}
