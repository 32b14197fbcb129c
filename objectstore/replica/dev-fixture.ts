/**
 * For tests: the object store an agent runs with --dev, in-process. A ring
 * of one (N/W/R lowered to 1/1/1) over a DurableReplicaStore and a
 * DurableHintStore in a temp dir with real LevelDB and real files, the ring
 * and the buckets table persisted in the same LevelDB, and a
 * ReplicatedBlobStore over it: built the way objectstore/replicated.ts
 * builds it, without gossip (no peers) and without serving the replica
 * protocol (nobody calls it). reopen() closes and opens the same data dir,
 * as an agent restart does. Not used by production code.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { LevelTableBackend, ReplicatedTable } from "../../cluster/index.js";
import { loadConfig } from "../../config/index.js";
import type { ThocError } from "../../errors/index.js";
import { RpcServer } from "../../rpc/index.js";
import { LocalStore } from "../../store/index.js";
import { ReplicatedBlobStore } from "./blob-store.js";
import { DurableHintStore } from "./durable-hints.js";
import { DurableReplicaStore } from "./durable-store.js";
import { ReplicationNode } from "./replication.js";
import { DurableRingHolder } from "./ring-store.js";

export interface DevStore {
  /** The temp dir; the agent's data dir is `data` under it. */
  dir: string;
  dataDir: string;
  /** Where the replica store keeps its body files (as openReplicated places it). */
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

const quiet = { info() {}, warn() {} };

export async function openDevStore(opts: { dir?: string; inlineMax?: number } = {}): Promise<DevStore> {
  const dir = opts.dir ?? await mkdtemp(path.join(tmpdir(), "thoc-devstore-"));
  const dataDir = path.join(dir, "data");
  const objectsDir = path.join(dataDir, "replicas", "objects");
  const config = loadConfig({ dev: true, env: { THOC_PRESET: "local" }, flags: {} });
  const local = await LocalStore.open(dataDir);
  const dataLoss: ThocError[] = [];
  const onDataLoss = (e: ThocError) => { dataLoss.push(e); };
  const replicas = await DurableReplicaStore.open({ store: local, dir: objectsDir, name: "replicas", onDataLoss, ...(opts.inlineMax !== undefined ? { inlineMax: opts.inlineMax } : {}) });
  const hints = await DurableHintStore.open({ store: local, dir: path.join(dataDir, "replicas", "hints"), onDataLoss });
  const ring = await DurableRingHolder.open(local);
  const buckets = await ReplicatedTable.open("buckets", new LevelTableBackend(local, "buckets"));
  const node = new ReplicationNode({
    nodeId: "dev-node", name: "dev-node", weight: 1, config: config.objectstore, clusterName: config.cluster.name, keys: config.cluster.keys,
    rpc: new RpcServer(), ring, store: replicas, hints,
    directory: { address: () => undefined }, liveness: { isUp: () => false }, log: quiet,
    tables: [buckets], members: () => [], syncInterval: 60_000,
  });
  await node.start();
  const blobs = new ReplicatedBlobStore({ coordinator: node.coordinator, buckets: node.table("buckets"), listBucket: (b, o) => node.listBucket(b, o) });
  const close = async () => {
    await blobs.close().catch(() => {});
    await node.stop();
    await hints.close().catch(() => {});
    await replicas.close().catch(() => {});
    await local.close().catch(() => {});
  };
  return {
    dir, dataDir, objectsDir, local, replicas, blobs, dataLoss, close,
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
