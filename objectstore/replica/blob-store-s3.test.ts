/**
 * The S3 protocol suites (objects, listings, multipart, bad input) against
 * the ReplicatedBlobStore of a 3-node in-process cluster over real gRPC:
 * every S3 behaviour a single node has, the cluster must have too.
 */
import { s3Suite } from "../s3/testutil.js";
import { startReplicatedCluster } from "./replicated-fixture.js";

s3Suite("S3 over a 3-node replicated cluster (real gRPC)", async () => {
  // The S3 server talks to node 1's store.
  const c = await startReplicatedCluster(3);
  return { store: c.nodes[0]!.blobs, dispose: () => c.close() };
});
