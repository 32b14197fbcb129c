/**
 * Child process for key-lock-crash.test.ts: a coordinator that takes the
 * conditional-write lock of one key on the parent's three in-process nodes
 * (over gRPC, signed as node-1), announces "held" on stdout and keeps holding
 * it (renewing its leases) until the parent SIGKILLs it.
 */
import { HlcClock, PeerAuth } from "../../cluster/index.js";
import { QuorumKeyLocker } from "./key-lock.js";
import { Peers } from "./peer.js";
import { TEST_CLUSTER } from "./fixture.js";

const { addresses, keys, bucket, key, ttlMs } = JSON.parse(process.argv[2]!) as { addresses: Record<string, string>; keys: string[]; bucket: string; key: string; ttlMs: number };
const peers = new Peers({ auth: new PeerAuth({ clusterName: TEST_CLUSTER, keys, nodeId: "node-1" }), directory: { address: (id) => addresses[id] }, hlc: new HlcClock("node-1"), timeoutMs: 2000 });
const locker = new QuorumKeyLocker({ self: "node-1", ttlMs, replicas: () => Object.keys(addresses), target: (id) => peers.get(id) });
await locker.acquire(bucket, key, 5000);
process.stdout.write("held\n");
// Holding the lock as a write would (renewals keep the event loop busy); never released.
setInterval(() => {}, 1000);
