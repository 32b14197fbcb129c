/**
 * In-process replicated clusters for tests: n ReplicationNodes with in-memory
 * replica, hint and table stores, each serving the authenticated replica
 * protocol on a real gRPC server on 127.0.0.1, joined into one ring, with a
 * ReplicatedBlobStore per node. `down` marks nodes the liveness view reports
 * down. Not used by production code.
 */
import { RpcServer } from "../../rpc/index.js";
import { ReplicatedBlobStore } from "./blob-store.js";
import { testKey } from "./fixture.js";
import { MemoryHintStore } from "./hints.js";
import { MemoryReplicaStore } from "./replica-store.js";
import { ReplicationNode, type ReplicationConfig } from "./replication.js";
import { MemoryRingHolder } from "./service.js";
import { MemoryTableBackend, ReplicatedTable } from "../../cluster/index.js";

export const testReplicationConfig: ReplicationConfig = {
  replicas: 3, writeQuorum: 2, readQuorum: 2, vnodes: 32,
  antiEntropyInterval: 60_000, tombstoneGrace: 60_000, repairBytesPerSecond: 64 << 20, peerTimeout: 3000,
};

export interface ReplicatedTestNode {
  id: string;
  rpc: RpcServer;
  store: MemoryReplicaStore;
  hints: MemoryHintStore;
  ring: MemoryRingHolder;
  node: ReplicationNode;
  blobs: ReplicatedBlobStore;
}

export interface ReplicatedTestCluster {
  nodes: ReplicatedTestNode[];
  down: Set<string>;
  close(): Promise<void>;
}

const quiet = { info() {}, warn() {} };

export async function startReplicatedCluster(n: number, config: Partial<ReplicationConfig> = {}): Promise<ReplicatedTestCluster> {
  const keys = [testKey()];
  const addresses = new Map<string, string>();
  const down = new Set<string>();
  const nodes: ReplicatedTestNode[] = [];
  for (let i = 1; i <= n; i++) {
    const id = `node-${i}`;
    const rpc = new RpcServer();
    const store = new MemoryReplicaStore();
    const ring = new MemoryRingHolder();
    const hints = new MemoryHintStore();
    const buckets = await ReplicatedTable.open("buckets", new MemoryTableBackend());
    const node = new ReplicationNode({
      nodeId: id, name: id, weight: 1, config: { ...testReplicationConfig, ...config }, clusterName: "t", keys, rpc, ring, store, hints,
      directory: { address: (x) => addresses.get(x) }, liveness: { isUp: (x) => !down.has(x) }, log: quiet,
      tables: [buckets], members: () => [...addresses.keys()].filter((x) => x !== id && !down.has(x)), syncInterval: 60_000,
    });
    addresses.set(id, `127.0.0.1:${await rpc.listen("127.0.0.1", 0)}`);
    rpc.setAllServing("SERVING");
    await node.start();
    const blobs = new ReplicatedBlobStore({ coordinator: node.coordinator, buckets: node.table("buckets"), listBucket: (b, o) => node.listBucket(b, o), gather: (b, p, o) => node.gather(b, p, o) });
    nodes.push({ id, rpc, store, hints, ring, node, blobs });
  }
  // Two rounds of ring gossip through node 1 and everyone has everyone.
  for (let round = 0; round < 2; round++) for (const x of nodes.slice(1)) await x.node.syncRingWith(nodes[0]!.id);
  return {
    nodes,
    down,
    async close() {
      for (const x of nodes) await x.node.stop();
      for (const x of nodes) await x.rpc.shutdown(200);
    },
  };
}
