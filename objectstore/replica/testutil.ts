/**
 * The replicated store's test face (for tests in other folders): the store a
 * `--dev` agent runs (a ring of one over the durable replica store, real
 * LevelDB and files), and an in-process cluster of replication nodes over
 * real gRPC.
 */
export { openDevStore, type DevStore } from "./dev-fixture.js";
export { startReplicatedCluster, testReplicationConfig, type ReplicatedTestCluster, type ReplicatedTestNode } from "./replicated-fixture.js";
