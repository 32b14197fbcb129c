/**
 * Who may call what: the one role table of the gRPC API (SPEC §4a,
 * docs/security.md "Roles and authorization") and the rule that applies it,
 * run by the RpcServer before every handler (rpc/ `authorize`).
 *
 *   public    anyone, no identity (fetching the CA, joining with a token)
 *   peer      node-to-node: a node certificate of this cluster; anonymous only
 *             over plaintext, where the cluster-key HMAC is the check
 *   viewer    get, list, watch, logs, metrics
 *   operator  VM, container and image lifecycle, consoles, exec, VNC tokens
 *   admin     S3 keys, node removal, certificates, join tokens
 *
 * Every method of every service the agent serves must be here: a method with
 * no entry is refused (and agent start fails on one, so it never ships).
 */
import { ThocError } from "../errors/index.js";
import { describeCaller, roleAtLeast, type CallContext, type Caller, type Role } from "../rpc/index.js";

export type Need = "public" | "peer" | Role;

const V = "viewer", O = "operator", A = "admin", P = "peer";
const svc = (name: string, methods: Record<string, Need>) =>
  Object.entries(methods).map(([m, need]) => [`/thoc.node.v1.${name}/${m}`, need] as const);

export const ROLE_TABLE: ReadonlyMap<string, Need> = new Map<string, Need>([
  ...svc("NodeService", { GetNode: V }),
  ...svc("ClusterService", { ListMembers: V, WatchMembers: V, GetRing: V, RemoveNode: A }),
  ...svc("VmService", {
    CreateVm: O, ListVms: V, GetVm: V, StartVm: O, StopVm: O, RestartVm: O, DeleteVm: O,
    CreateSnapshot: O, ListSnapshots: V, RestoreSnapshot: O, DeleteSnapshot: O,
    Console: O, Logs: V, GetMetrics: V, ListGpus: V, GetVncToken: O, SetVmAutostart: O,
  }),
  ...svc("ImageService", { ImportImage: O, ListImages: V, GetImage: V, DeleteImage: O }),
  ...svc("ContainerService", {
    CreateContainer: O, ListContainers: V, GetContainer: V, StartContainer: O, StopContainer: O, RestartContainer: O, DeleteContainer: O,
    ContainerLogs: V, Exec: O, ContainerStats: V, ImportContainerImage: O, ListContainerImages: V, DeleteContainerImage: O, GetContainerRuntime: V,
  }),
  // Access key ids are half a credential and the table is the S3 admin's: listing is admin too.
  ...svc("KeyService", { CreateKey: A, ListKeys: A, DeleteKey: A }),
  ...svc("ObjectStoreService", {
    PutReplica: P, GetReplica: P, HeadReplica: P, DeleteReplica: P, ListRange: P, DigestRange: P,
    GetRing: P, MergeRing: P, ListBucket: P, SyncTable: P, DigestArcs: P, LockKey: P, UnlockKey: P, SyncDigests: P,
  }),
  ...svc("PkiService", { GetCa: "public", Join: "public", CreateJoinToken: A, IssueCertificate: A, SignNodeCertificate: P, RevokeCertificate: A }),
  ...svc("EventService", { WatchEvents: V }),
  ...svc("SchedulerService", { GetLeader: V, RequestVote: P, Heartbeat: P, HeartbeatStream: P, Place: P, Commit: P, PlaceContainer: P, CommitContainer: P }),
  ...svc("EventPeerService", { WatchNodeEvents: P }),
]);

/**
 * Methods a node may call on another on an operator's behalf: any agent
 * answers any VM or container command by routing it to its node (SPEC §4), after
 * authorizing the operator itself; the node that runs the VM sees the
 * routing node's certificate.
 */
const ROUTABLE = new Set([...[...ROLE_TABLE.keys()].filter((m) => /^\/thoc\.node\.v1\.(VmService|ContainerService)\//.test(m)),
  // A follower asks the leader which voters answer (thoc-node leader on any node), and probes it after a silence.
  "/thoc.node.v1.SchedulerService/GetLeader"]);

export interface AuthzOptions {
  /** --dev: no authentication, every caller is admin (the banner says so). */
  dev: boolean;
  /** gid of the group whose local members are admin (`thoc`), when it exists. */
  adminGid?: number;
  table?: ReadonlyMap<string, Need>;
  /** A certificate serial revoked cluster-wide (`thoc-node cert revoke`); normalized lowercase hex. */
  isRevoked?: (serial: string) => boolean;
}

/** The role a caller has, or why it has none (for messages). */
export function roleOf(c: Caller, o: AuthzOptions): Role | "node" | undefined {
  if (o.dev) return "admin";
  switch (c.kind) {
    case "operator": return c.role;
    case "node": return "node";
    case "local": return isLocalAdmin(c, o.adminGid) ? "admin" : undefined;
    case "anonymous": return undefined;
  }
}

export function isLocalAdmin(c: Extract<Caller, { kind: "local" }>, adminGid?: number): boolean {
  if (c.uid === 0) return true;
  return adminGid !== undefined && (c.gid === adminGid || (c.groups ?? []).includes(adminGid));
}

const HOW = "present an operator certificate (`thoc-node cert issue NAME --role ROLE` on a node, then --tls-cert/--tls-key/--tls-ca), or run the CLI on the node as root or a member of group thoc (local socket)";

/** Throws unless the caller may call `method`; the message names the role needed and the caller's. */
export function checkCall(method: string, caller: Caller, o: AuthzOptions): void {
  const need = (o.table ?? ROLE_TABLE).get(method);
  if (need === undefined) throw new ThocError("permission_denied", `${method} has no role in the agent's role table: refused`);
  if (o.dev || need === "public") return;
  const who = describeCaller(caller);
  if ((caller.kind === "operator" || caller.kind === "node") && o.isRevoked?.(caller.serial.replace(/^0+(?=.)/, ""))) {
    throw new ThocError("unauthenticated", `${method}: the certificate of ${who} was revoked (thoc-node cert revoke); ask an admin for a new one`);
  }
  if (need === "peer") {
    if (caller.kind === "node") return;
    // Plaintext peers (loopback, no TLS) have only the cluster-key HMAC, checked by the service itself.
    if (caller.kind === "anonymous" && caller.transport === "insecure") return;
    if (caller.kind === "anonymous") throw new ThocError("unauthenticated", `${method} is a node-to-node method: it needs a node certificate of this cluster`);
    throw new ThocError("permission_denied", `${method} is a node-to-node method (role peer); ${who} may not call it`);
  }
  switch (caller.kind) {
    case "anonymous":
      throw new ThocError("unauthenticated", `${method} needs role ${need} and the call has no identity: ${HOW.replace("ROLE", need)}`);
    case "node":
      if (ROUTABLE.has(method)) return;
      throw new ThocError("permission_denied", `${method} needs role ${need}; ${who} has a node certificate, which is not an operator credential`);
    case "local":
      if (isLocalAdmin(caller, o.adminGid)) return;
      throw new ThocError("permission_denied", `${method} needs role ${need}; ${who} has no role: on the local socket only root and group thoc are admin`);
    case "operator":
      if (roleAtLeast(caller.role, need)) return;
      throw new ThocError("permission_denied", `${method} needs role ${need}; ${who} has role ${caller.role}`);
  }
}

/** The RpcServer hook. */
export function authorizer(o: AuthzOptions): (method: string, ctx: CallContext) => void {
  return (method, ctx) => checkCall(method, ctx.caller, o);
}

/** Methods served without an entry in the table (agent start refuses them). */
export function missingRoles(paths: readonly string[], table: ReadonlyMap<string, Need> = ROLE_TABLE): string[] {
  return paths.filter((p) => !table.has(p));
}
