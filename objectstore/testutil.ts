/**
 * The object store's test face: the store an agent runs with --dev, built
 * in-process by the agent's own openReplicated() (a ring of one, N/W/R
 * lowered to 1/1/1, over the durable replica and hint stores in a temp dir
 * with real LevelDB and real files), with a membership of one node and a
 * gRPC server that never listens (no peer calls it). reopen() closes and
 * opens the same data dir, as an agent restart does.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Registry } from "prom-client";
import { loadConfig } from "../config/index.js";
import { createLogger, type AgentContext, type Member, type Membership } from "../core/index.js";
import type { ThocError } from "../errors/index.js";
import { RpcServer } from "../rpc/index.js";
import { LocalStore } from "../store/index.js";
import type { DurableReplicaStore, ReplicatedBlobStore } from "./replica/index.js";
import { openReplicated } from "./replicated.js";

export interface DevStore {
  /** The temp dir; the agent's data dir is `data` under it. */
  dir: string;
  dataDir: string;
  /** Where the replica store keeps its body files. */
  objectsDir: string;
  local: LocalStore;
  replicas: DurableReplicaStore;
  blobs: ReplicatedBlobStore;
  /** Data-loss reports of the replica store (what the agent counts and logs). */
  dataLoss: ThocError[];
  /** Closes everything and opens the same data dir again. */
  reopen(): Promise<DevStore>;
  /** Closes everything but keeps the files. */
  close(): Promise<void>;
  /** Closes and removes the temp dir. */
  dispose(): Promise<void>;
}

/** A cluster of one as the gossip layer would report it. */
function aloneMembership(self: Member): Membership {
  return {
    localId: self.id,
    members: () => [self],
    member: (id) => (id === self.id ? self : undefined),
    local: () => self,
    updateMeta() {},
    subscribe: () => () => {},
  };
}

export async function openDevStore(opts: { dir?: string; inlineMax?: number } = {}): Promise<DevStore> {
  const dir = opts.dir ?? await mkdtemp(path.join(tmpdir(), "thoc-devstore-"));
  const dataDir = path.join(dir, "data");
  const config = loadConfig({ dev: true, file: null, env: { THOC_PRESET: "test" }, flags: { "--data-dir": dataDir } });
  const local = await LocalStore.open(dataDir);
  const addresses = { grpc: "127.0.0.1:1", http: "127.0.0.1:2", s3: "127.0.0.1:3", gossip: "127.0.0.1:4" };
  const ctx: AgentContext = {
    config, store: local, log: createLogger("silent"), metrics: new Registry(), rpc: new RpcServer(), nodeId: local.nodeId, version: "test", addresses,
    capacity: () => ({ cpus: 1, cpuModel: "test", memoryBytes: 2 ** 30, memoryFreeBytes: 2 ** 29, diskBytes: 2 ** 34, diskFreeBytes: 2 ** 33, gpus: [] }),
  };
  const self: Member = {
    id: local.nodeId, name: config.name, address: addresses.gossip, state: "alive", incarnation: 1, stateChangedAt: Date.now(),
    meta: { name: config.name, version: "test", grpc: addresses.grpc, s3: addresses.s3, gossip: addresses.gossip, cpus: 1, memBytes: 0, memFreeBytes: 0, diskBytes: 0, diskFreeBytes: 0, gpus: 0 },
  };
  const dataLoss: ThocError[] = [];
  const r = await openReplicated(ctx, aloneMembership(self), ctx.log, (e) => { dataLoss.push(e); }, opts.inlineMax !== undefined ? { inlineMax: opts.inlineMax } : {});
  const close = async () => {
    await r.blobs.close().catch(() => {});
    await r.stop();
    await local.close().catch(() => {});
  };
  return {
    dir, dataDir, objectsDir: path.join(dataDir, "replicas", "objects"), local, replicas: r.store, blobs: r.blobs, dataLoss, close,
    async reopen() {
      await close();
      return openDevStore({ ...opts, dir });
    },
    async dispose() {
      await close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
