import { test } from "node:test";
import assert from "node:assert/strict";
import { isBlobError } from "../blob/index.js";
import { startReplicatedCluster } from "./replicated-fixture.js";

test("bucket config sections: set on one node, read on another, kept apart, gone with the bucket", async () => {
  const c = await startReplicatedCluster(3);
  try {
    const [a, b, d] = c.nodes.map((n) => n.blobs) as [typeof c.nodes[0]["blobs"], typeof c.nodes[0]["blobs"], typeof c.nodes[0]["blobs"]];
    await a.createBucket("cfg-bucket", "alice");
    assert.equal(await b.getBucketConfig("cfg-bucket", "versioning"), undefined);
    await a.putBucketConfig("cfg-bucket", "versioning", "Enabled");
    await b.putBucketConfig("cfg-bucket", "tagging", { team: "infra" });
    assert.equal(await d.getBucketConfig("cfg-bucket", "versioning"), "Enabled");
    assert.deepEqual(await a.getBucketConfig("cfg-bucket", "tagging"), { team: "infra" });
    // Sections are not buckets.
    assert.deepEqual((await d.listBuckets()).map((x) => x.name), ["cfg-bucket"]);
    await d.putBucketConfig("cfg-bucket", "tagging", undefined);
    assert.equal(await a.getBucketConfig("cfg-bucket", "tagging"), undefined);
    await assert.rejects(a.getBucketConfig("nope-bucket", "cors"), (e) => isBlobError(e, "NoSuchBucket"));
    await a.deleteBucket("cfg-bucket");
    await b.createBucket("cfg-bucket", "alice");
    assert.equal(await d.getBucketConfig("cfg-bucket", "versioning"), undefined, "a re-created bucket starts without the old sections");
  } finally {
    await c.close();
  }
});
