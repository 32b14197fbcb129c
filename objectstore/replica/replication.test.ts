import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { RpcServer } from "../../rpc/index.js";
import { ReplicationNode, type ReplicationConfig } from "./replication.js";
import { MemoryReplicaStore, knownWrite, once } from "./replica-store.js";
import { MemoryHintStore } from "./hints.js";
import { MemoryRingHolder } from "./service.js";
import { HlcClock } from "../../cluster/index.js";
import { placementKey } from "./ring.js";
import { bytes, readAll, testKey, waitFor } from "./fixture.js";

const config: ReplicationConfig = {
  replicas: 3, writeQuorum: 2, readQuorum: 2, vnodes: 32,
  antiEntropyInterval: 200, tombstoneGrace: 60_000, repairBytesPerSecond: 10 << 20, peerTimeout: 2000,
};
const quiet = { info() {}, warn() {} };

test("three nodes: join by ring gossip, replicate through any coordinator, converge by background anti-entropy", async () => {
  const keys = [testKey()];
  const addresses = new Map<string, string>();
  const down = new Set<string>();
  const nodes: { id: string; rpc: RpcServer; store: MemoryReplicaStore; hints: MemoryHintStore; ring: MemoryRingHolder; node: ReplicationNode }[] = [];
  try {
    for (const id of ["node-1", "node-2", "node-3"]) {
      const rpc = new RpcServer();
      const store = new MemoryReplicaStore();
      const ring = new MemoryRingHolder();
      const hints = new MemoryHintStore();
      const node = new ReplicationNode({
        nodeId: id, name: id, weight: 1, config, clusterName: "t", keys, rpc, ring, store, hints,
        directory: { address: (x) => addresses.get(x) }, liveness: { isUp: (x) => !down.has(x) }, log: quiet,
      });
      addresses.set(id, `127.0.0.1:${await rpc.listen("127.0.0.1", 0)}`);
      rpc.setAllServing("SERVING");
      await node.start();
      nodes.push({ id, rpc, store, hints, ring, node });
    }
    const [a, b, c] = nodes as [typeof nodes[0], typeof nodes[0], typeof nodes[0]];
    assert.deepEqual(a.ring.state().active().map((m) => m.nodeId), ["node-1"], "each node starts with a ring of itself");
    // Gossip: 2 and 3 each talk to one node, then 1 talks to 3: everyone has everyone.
    await b.node.syncRingWith("node-1");
    await c.node.syncRingWith("node-2");
    await a.node.syncRingWith("node-3");
    await b.node.syncRingWith("node-1");
    const digests = new Set(nodes.map((x) => x.ring.state().digest()));
    assert.equal(digests.size, 1);
    assert.equal(a.node.ring().size, 3);
    for (let i = 0; i < 50; i++) {
      const k = `k${i}`;
      assert.deepEqual(a.node.ring().preferenceList(placementKey("b", k), 3), c.node.ring().preferenceList(placementKey("b", k), 3));
    }

    const rec = await b.node.coordinator.put({ bucket: "b", key: "hello", meta: "{}" }, bytes("hello ", "world"));
    const got = await c.node.coordinator.get("b", "hello");
    assert.equal(got.record.version, rec.version);
    assert.equal((await readAll(got.body)).toString(), "hello world");

    // A record only node-1 has (say it was written while the others were cut off):
    // background anti-entropy copies it to the other two.
    const body = Buffer.from("only on node-1");
    const only = { bucket: "b", key: "lonely", version: new HlcClock("x").now(), tombstone: false, size: body.length, sha256: createHash("sha256").update(body).digest("hex"), meta: "{}" };
    await a.store.put(knownWrite(only, once(body)));
    await waitFor("anti-entropy spread the record", async () => (await b.store.head("b", "lonely")) && (await c.store.head("b", "lonely")), 10_000);

    // Hinted handoff through the node's own timer: node-3 marked down, then back.
    down.add("node-3");
    const hinted = await a.node.coordinator.put({ bucket: "b", key: "while-down", meta: "{}" }, bytes("h"));
    assert.equal(await c.store.head("b", "while-down"), undefined);
    assert.equal(a.hints.count("node-3") + b.hints.count("node-3"), 1, "a stand-in holds the hint");
    down.delete("node-3");
    a.node.nodeUp(); b.node.nodeUp();
    await waitFor("hint delivered", async () => (await c.store.head("b", "while-down"))?.version === hinted.version, 10_000);
    await waitFor("hint dropped", async () => a.hints.count() + b.hints.count() === 0, 5_000);
  } finally {
    for (const x of nodes) await x.node.stop();
    for (const x of nodes) await x.rpc.shutdown(200);
  }
});
