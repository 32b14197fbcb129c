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

test("bucket config: a parsed section is reused until its stored text changes, here or through a peer", async () => {
  const c = await startReplicatedCluster(3);
  try {
    const [a, b] = c.nodes.map((n) => n.blobs) as [typeof c.nodes[0]["blobs"], typeof c.nodes[0]["blobs"]];
    await a.createBucket("cache-bucket", "alice");
    const rule = { allowedOrigins: ["https://one.example"], allowedMethods: ["GET"], allowedHeaders: [], exposeHeaders: [] };
    await a.putBucketConfig("cache-bucket", "cors", [rule]);
    const seen = async () => {
      for (let i = 0; i < 100; i++) {
        const v = await b.getBucketConfig("cache-bucket", "cors");
        if (v?.[0]?.allowedOrigins[0] !== "https://one.example") return v;
        await new Promise((r) => setTimeout(r, 20));
      }
      return b.getBucketConfig("cache-bucket", "cors");
    };
    const first = await b.getBucketConfig("cache-bucket", "cors");
    assert.deepEqual(first, [rule]);
    assert.equal(await b.getBucketConfig("cache-bucket", "cors"), first, "parsed once while the text is unchanged");
    assert.ok(Object.isFrozen(first) && Object.isFrozen(first![0]!.allowedOrigins), "shared values are frozen");
    // Written through another node: b sees the new rules on its next read.
    await a.putBucketConfig("cache-bucket", "cors", [{ ...rule, allowedOrigins: ["https://two.example"] }]);
    assert.deepEqual((await seen())?.[0]?.allowedOrigins, ["https://two.example"]);
    await a.putBucketConfig("cache-bucket", "cors", undefined);
    assert.equal(await b.getBucketConfig("cache-bucket", "cors"), undefined);
    // The bucket record too: deleted and re-created by another owner, b answers with the new owner.
    assert.equal((await b.headBucket("cache-bucket")).owner, "alice");
    await a.deleteBucket("cache-bucket");
    await a.createBucket("cache-bucket", "bob");
    let owner = "";
    for (let i = 0; i < 100 && owner !== "bob"; i++) {
      owner = await b.headBucket("cache-bucket").then((x) => x.owner, () => "");
      if (owner !== "bob") await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(owner, "bob");
  } finally {
    await c.close();
  }
});
