/**
 * The S3 protocol suites (objects, listings, multipart, bad input), run
 * against the ReplicatedBlobStore of a 3-node in-process cluster over real
 * gRPC instead of the in-memory store: every S3 behaviour the single-node
 * stores have, the replicated one must have too.
 */
process.env.THOC_S3_TEST_STORE = "replicated";
await import("../s3/sdk-objects.test.js");
await import("../s3/sdk-list.test.js");
await import("../s3/sdk-multipart.test.js");
await import("../s3/badinput.test.js");
