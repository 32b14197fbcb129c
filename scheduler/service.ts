/**
 * SchedulerService: protobuf in, Election / Placer / VmManager calls out.
 * RequestVote and Heartbeat are the election's transport; Place is a create
 * forwarded by a node that is not the leader; Commit is the leader's fenced
 * command to the node it chose: the node refuses a term lower than the
 * highest it has seen (fence), then creates with the same fit() as always.
 * PlaceContainer and CommitContainer do the same for containers.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { ThocError } from "../errors/index.js";
import type { SchedulerService, LeaderInfoSchema, CreateContainerRequest, CreateVmRequest, VmSchema, VoteRequest, HeartbeatRequest } from "../proto/index.js";
import type { ImplOf } from "../rpc/index.js";
import { describeCaller } from "../rpc/index.js";
import { specFromPb, vmToPb, type VmManager } from "../vm/index.js";
import type { ServedBeatStreams } from "./beat-stream.js";
import type { Election } from "./election.js";
import type { Fence } from "./fence.js";
import type { HeartbeatRequest as Hb, VoteRequest as Vote } from "./messages.js";
import type { ContainerPublisher } from "./container-publisher.js";
import type { ContainerInit, ContainerNode } from "./container-table.js";
import type { Placer } from "./placer.js";
import type { Publisher } from "./publisher.js";
import { isContainer, type VmTables } from "./vm-table.js";

type VmInit = MessageInitShape<typeof VmSchema>;

export interface ServiceOptions {
  self: { id: string; name: string };
  election: Election;
  fence: Fence;
  placer: Placer;
  manager: () => VmManager;
  publisher: Publisher;
  /** This node's containers (undefined: no container subsystem, or not started). */
  containers: () => ContainerNode | undefined;
  ctPublisher: ContainerPublisher;
  tables: VmTables;
  leaderInfo(): Promise<MessageInitShape<typeof LeaderInfoSchema>>;
  /** Why this node knows no leader (wiring.ts), for refusals. */
  noLeaderReason(): string;
  /** Forward a create to the leader (this node is not it). */
  forward(req: CreateVmRequest, onBehalfOf: string): Promise<VmInit>;
  log: { info(o: object, m: string): void };
  /** Open heartbeat streams (closed when the agent stops). */
  beats: ServedBeatStreams;
}

const num = (v: bigint) => {
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new ThocError("invalid_argument", `term ${v} is out of range`);
  return n;
};

export function toVoteRequest(r: VoteRequest): Vote {
  return { term: num(r.term), candidateId: r.candidate, configVersion: num(r.configVersion), configTerm: num(r.configTerm), ...(r.preVote ? { preVote: true } : {}) };
}

export function toHeartbeat(r: HeartbeatRequest): Hb {
  const c = r.config;
  if (!c) throw new ThocError("invalid_argument", "Heartbeat: no voter config");
  return { term: num(r.term), leaderId: r.leader, configCommitted: r.configCommitted, config: { version: num(c.version), term: num(c.term), voters: [...c.voters] } };
}


export function schedulerService(o: ServiceOptions): ImplOf<typeof SchedulerService> {
  /** Placement (VMs and containers alike) is the leader's: another node is refused, naming the leader or why there is none. */
  const leaderOnly = () => {
    const s = o.election.status();
    if (s.role === "leader") return;
    throw new ThocError("unavailable", `node ${o.self.name} is not the scheduler leader${s.leader ? ` (the leader is ${s.leader}, term ${s.term}); retry` : `: ${o.noLeaderReason()}`}`);
  };
  return {
    async getLeader() { return o.leaderInfo(); },
    async requestVote(req) {
      const r = await o.election.handleVote(toVoteRequest(req));
      return { term: BigInt(r.term), granted: r.granted, reason: r.reason ?? "" };
    },
    async heartbeat(req) {
      const r = await o.election.handleHeartbeat(toHeartbeat(req));
      return { term: BigInt(r.term), success: r.success, configVersion: BigInt(r.configVersion) };
    },
    heartbeatStream(reqs) {
      return o.beats.serve(reqs, async (req) => {
        const r = await o.election.handleHeartbeat(toHeartbeat(req));
        return { term: BigInt(r.term), success: r.success, configVersion: BigInt(r.configVersion) };
      });
    },
    async place(req, ctx) {
      if (!req.create) throw new ThocError("invalid_argument", "Place: no create request");
      leaderOnly();
      o.log.info({ vm: req.create.spec?.name, onBehalfOf: req.onBehalfOf, from: describeCaller(ctx.caller) }, "scheduler: placing a create forwarded by another node");
      return { vm: await o.placer.place(req.create) };
    },
    async commit(req) {
      return { vm: await commitHere(o, num(req.term), req.leader, req.create) };
    },
    async placeContainer(req, ctx) {
      if (!req.create) throw new ThocError("invalid_argument", "PlaceContainer: no create request");
      leaderOnly();
      o.log.info({ container: req.create.spec?.name, onBehalfOf: req.onBehalfOf, from: describeCaller(ctx.caller) }, "scheduler: placing a container create forwarded by another node");
      return { container: await o.placer.placeContainer(req.create) };
    },
    async commitContainer(req) {
      return { container: await commitContainerHere(o, num(req.term), req.leader, req.create) };
    },
  };
}

/** The fenced create on this node: refuse a deposed leader's term, then create with the node's own fit(). */
export async function commitHere(o: Pick<ServiceOptions, "fence" | "tables" | "self" | "manager" | "publisher">, term: number, leader: string, c: CreateVmRequest | undefined): Promise<VmInit> {
  if (!c?.spec) throw new ThocError("invalid_argument", "Commit: no VM spec");
  await o.fence.accept(term, `placement of VM ${c.spec.name} by ${leader}`);
  const other = o.tables.local(c.spec.name);
  if (other && isContainer(other)) {
    throw new ThocError("already_exists", `a container named ${c.spec.name} already exists on node ${other.nodeName}: names are unique in the cluster, across VMs and containers`, { vm: c.spec.name });
  }
  if (other && other.nodeId !== o.self.id && other.requestId !== c.requestId) {
    throw new ThocError("already_exists", `a VM named ${c.spec.name} already exists on another node: VM names are unique in the cluster`, { vm: c.spec.name });
  }
  const r = await o.manager().create(specFromPb(c.spec), { start: !c.noStart, by: "scheduler", group: c.group, requestId: c.requestId });
  // The leader sees it in its copy of the table before it places the next VM.
  await o.publisher.publish(r).catch(() => {});
  return { ...vmToPb(r), nodeId: o.self.id };
}

/**
 * The fenced container create on this node: refuse a deposed leader's term,
 * a name another workload holds, then create with the node's own admission
 * (fit() over VMs and containers, GPUs, host ports free here). A retry of
 * the same request answers with the container it made.
 */
export async function commitContainerHere(
  o: Pick<ServiceOptions, "fence" | "tables" | "self" | "containers" | "ctPublisher">, term: number, leader: string, c: CreateContainerRequest | undefined,
): Promise<ContainerInit> {
  const name = c?.spec?.name;
  if (!c?.spec || !name) throw new ThocError("invalid_argument", "CommitContainer: no container spec");
  await o.fence.accept(term, `placement of container ${name} by ${leader}`);
  const node = o.containers();
  if (!node?.available()) throw new ThocError("unavailable", `node ${o.self.name} runs no container engine: ${node ? "its engine does not answer" : "the container subsystem is off"} (thoc-node ct runtime)`, { container: name });
  const mine = await node.get(name).catch(() => undefined);
  if (mine) {
    if (c.requestId && mine.requestId === c.requestId) return { ...node.toPb(mine), nodeId: o.self.id };
    throw new ThocError("already_exists", `a container named ${name} already exists on node ${o.self.name}`, { container: name });
  }
  const other = o.tables.local(name);
  if (other && (!isContainer(other) || (other.nodeId !== o.self.id && other.requestId !== c.requestId))) {
    throw new ThocError("already_exists", `a ${isContainer(other) ? "container" : "VM"} named ${name} already exists on node ${other.nodeName}: names are unique in the cluster, across VMs and containers`, { container: name });
  }
  const r = await node.create(node.specFromPb(c.spec), {
    noStart: c.noStart, by: "scheduler", requestId: c.requestId, ...(c.group ? { group: c.group } : {}),
    ...(c.spec.registryAuth?.password ? { registryPassword: c.spec.registryAuth.password } : {}),
  });
  // The leader sees it in its copy of the table before it places the next one.
  await o.ctPublisher.publish(r).catch(() => {});
  return { ...node.toPb(r), nodeId: o.self.id };
}
