/**
 * The bulk data path on real sockets (fixture.ts: in-process nodes, each an
 * RpcServer whose port carries gRPC and the bulk path): what reaches a
 * replica's store through it, and what must not. A TCP proxy in between
 * tampers with bytes on the wire.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import net from "node:net";
import { HlcClock, PeerAuth } from "../../cluster/index.js";
import { ThocError } from "../../errors/index.js";
import { BulkClient } from "./bulk-client.js";
import { bytes, readAll, startTestCluster, testKey, TEST_CLUSTER, type TestCluster } from "./fixture.js";
import { knownWrite, once, type ReplicaRecord } from "./replica-store.js";
import { packRecords, unpackRecords } from "./wire.js";
import { placementKey } from "./ring.js";

const meta = (bucket: string, key: string) => ({ bucket, key, meta: "{}" });
const quiet = { info() {}, warn() {} };

async function withCluster(fn: (c: TestCluster) => Promise<void>): Promise<void> {
  const c = await startTestCluster(3);
  try { await fn(c); } finally { await c.close(); }
}

/**
 * A TCP proxy to `target` that flips one byte of the first HTTP message body
 * going `dir` ("up": to the server, "down": to the client), `at` bytes after
 * that message's header ends. Returns its address.
 */
async function tamperingProxy(target: string, dir: "up" | "down", at: number): Promise<{ address: string; flipped: () => boolean; close(): void }> {
  const [host, port] = target.split(":") as [string, string];
  let flipped = false;
  const conns = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(port), host);
    conns.add(client).add(upstream);
    const pipe = (from: net.Socket, to: net.Socket, tamper: boolean) => {
      let seen = Buffer.alloc(0);
      let bodyAt = -1;
      from.on("data", (c: Buffer) => {
        if (tamper && !flipped) {
          const start = seen.length;
          seen = Buffer.concat([seen, c]);
          if (bodyAt < 0) {
            const end = seen.indexOf("\r\n\r\n");
            if (end >= 0) bodyAt = end + 4;
          }
          // Chunked bodies put a size line first: stay clear of it.
          const pos = bodyAt >= 0 ? bodyAt + at : -1;
          if (pos >= start && pos < seen.length) {
            c = Buffer.from(c);
            c[pos - start] ^= 0x5a;
            flipped = true;
          }
        }
        to.write(c);
      });
      from.on("end", () => to.end());
      from.on("error", () => to.destroy());
    };
    pipe(client, upstream, dir === "up");
    pipe(upstream, client, dir === "down");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    flipped: () => flipped,
    close: () => { server.close(); for (const s of conns) s.destroy(); },
  };
}

test("a body tampered in flight is refused by the replica (nothing stored) and the PUT still reaches W", async () => {
  await withCluster(async (c) => {
    const p = await tamperingProxy(c.byId("node-2").address, "up", 70_000);
    c.redirect("node-2", p.address);
    try {
      const { coord, peers } = c.coordinator(0, { log: quiet });
      const body = randomBytes(200_000);
      // Streamed (size unknown up front): the receiver learns size and sha256 from the trailer.
      const rec = await coord.put(meta("b", "tampered"), bytes(body.subarray(0, 100_000), body.subarray(100_000)));
      await coord.settled();
      assert.ok(p.flipped(), "the proxy changed a byte on the wire");
      assert.equal(await c.byId("node-2").store.head("b", "tampered"), undefined, "the tampered replica was not committed");
      assert.equal((await c.byId("node-1").store.head("b", "tampered"))?.version, rec.version);
      assert.equal((await c.byId("node-3").store.head("b", "tampered"))?.version, rec.version);
      // Asked directly, the replica answers data_loss (its own sha256 check), not success.
      const p2 = await tamperingProxy(c.byId("node-2").address, "up", 1000);
      c.redirect("node-2", p2.address);
      try {
        const direct = c.coordinator(0, { log: quiet }).peers.get("node-2");
        const r: ReplicaRecord = { ...rec, key: "direct", sha256: createHash("sha256").update(body).digest("hex"), size: body.length };
        await assert.rejects(direct.put(knownWrite(r, once(body))), (e: ThocError) => e.code === "data_loss" && /does not match/.test(e.message));
        assert.equal(await c.byId("node-2").store.head("b", "direct"), undefined);
      } finally {
        p2.close();
      }
      void peers;
    } finally {
      p.close();
    }
  });
});

test("a body tampered on its way back is refused by the reader (data_loss), never returned whole", async () => {
  await withCluster(async (c) => {
    const body = randomBytes(300_000);
    const rec: ReplicaRecord = { bucket: "b", key: "k", version: new HlcClock("t").now(), tombstone: false, size: body.length, sha256: createHash("sha256").update(body).digest("hex"), meta: "{}" };
    await c.byId("node-2").store.put(knownWrite(rec, once(body)));
    const p = await tamperingProxy(c.byId("node-2").address, "down", 150_000);
    c.redirect("node-2", p.address);
    try {
      const peer = c.coordinator(0, { log: quiet }).peers.get("node-2");
      const got = await peer.get("b", "k");
      await assert.rejects(readAll(got.body), (e: ThocError) => e.code === "data_loss");
      assert.ok(p.flipped());
    } finally {
      p.close();
    }
  });
});

test("a replica killed mid-stream keeps no partial copy, and the PUT succeeds with the other two (W=2)", async () => {
  await withCluster(async (c) => {
    const { coord } = c.coordinator(0, { log: quiet });
    const chunk = randomBytes(64 << 10);
    let sent = 0;
    const slow = (async function* () {
      for (let i = 0; i < 24; i++) {
        if (i === 6) c.byId("node-2").kill();
        sent++;
        yield chunk;
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    const rec = await coord.put(meta("b", "big"), slow);
    await coord.settled();
    assert.equal(sent, 24);
    assert.equal(rec.size, 24 * chunk.length);
    assert.equal(await c.byId("node-2").store.head("b", "big"), undefined, "no partial replica on the killed node");
    for (const id of ["node-1", "node-3"]) {
      const got = await c.byId(id).store.get("b", "big");
      assert.equal(got?.record.version, rec.version);
      assert.equal((await readAll(got!.body)).length, 24 * chunk.length);
    }
  });
});

test("bulk requests carry the replica MAC: another cluster's key, or a request signed for another node, is refused and stores nothing", async () => {
  await withCluster(async (c) => {
    const n2 = c.byId("node-2");
    const body = Buffer.from("payload");
    const rec: ReplicaRecord = { bucket: "b", key: "forged", version: new HlcClock("x").now(), tombstone: false, size: body.length, sha256: createHash("sha256").update(body).digest("hex"), meta: "{}" };
    const client = (auth: PeerAuth, target: string) => new BulkClient({ nodeId: target, address: n2.address, auth, hlc: new HlcClock("node-1"), tls: () => undefined, timeoutMs: 2000 });
    const foreign = client(new PeerAuth({ clusterName: TEST_CLUSTER, keys: [testKey()], nodeId: "node-1" }), "node-2");
    await assert.rejects(foreign.put(knownWrite(rec, once(body))), (e: ThocError) => e.code === "unauthenticated" && /bad signature/.test(e.message));
    await assert.rejects(foreign.get("b", "forged"), (e: ThocError) => e.code === "unauthenticated");
    // The right key, but signed for node-3: a header replayed to another node is refused.
    const misdirected = client(new PeerAuth({ clusterName: TEST_CLUSTER, keys: n2.keys, nodeId: "node-1" }), "node-3");
    await assert.rejects(misdirected.put(knownWrite(rec, once(body))), (e: ThocError) => e.code === "unauthenticated" && /signed for node/.test(e.message));
    assert.equal(await n2.store.head("b", "forged"), undefined);
    // The same client, correctly addressed, is served.
    const ok = client(new PeerAuth({ clusterName: TEST_CLUSTER, keys: n2.keys, nodeId: "node-1" }), "node-2");
    assert.equal((await ok.put(knownWrite(rec, once(body)))).applied, true);
    assert.deepEqual(await readAll((await ok.get("b", "forged")).body), body);
    for (const x of [foreign, misdirected, ok]) x.close();
  });
});

test("a body announced small goes whole in one request with its final meta; one longer than announced is refused before anything is sent", async () => {
  await withCluster(async (c) => {
    const { coord } = c.coordinator(0, { log: quiet });
    const small = randomBytes(4096);
    const rec = await coord.put(meta("b", "small"), bytes(small), { size: small.length, finalMeta: () => JSON.stringify({ etag: "x" }) });
    await coord.settled();
    for (const n of c.nodes) {
      const h = await n.store.head("b", "small");
      assert.equal(h?.version, rec.version);
      assert.equal(h?.meta, JSON.stringify({ etag: "x" }), "the final meta went with the single request");
    }
    // Announced small but longer: refused before anything is sent.
    await assert.rejects(coord.put(meta("b", "liar"), bytes(randomBytes(70_000)), { size: 10 }), (e: ThocError) => e.code === "invalid_argument");
    for (const n of c.nodes) assert.equal(await n.store.head("b", "liar"), undefined);
  });
});

test("a coordinator holding no replica reads a small object in one round trip: the body comes with the records, verified", async () => {
  const c = await startTestCluster(4);
  try {
    const { coord } = c.coordinator(0, { log: quiet });
    const ring = c.byId("node-1").ring.state().ring(64);
    let key = "";
    for (let i = 0; !key; i++) if (!ring.preferenceList(placementKey("b", `k${i}`), 3).includes("node-1")) key = `k${i}`;
    const body = randomBytes(5000);
    await coord.put(meta("b", key), bytes(body), { size: body.length });
    await coord.settled();
    const known = await coord.head("b", key);
    assert.ok(known.body, "the body came with the quorum round");
    assert.deepEqual(Buffer.from(known.body!), body);
    // No second request: with every replica gone, the read still completes from what the round brought.
    for (const id of ["node-2", "node-3", "node-4"]) c.byId(id).kill();
    assert.deepEqual(await readAll((await coord.get("b", key, { known })).body), body);
    assert.deepEqual(await readAll((await coord.get("b", key, { known, range: { start: 10, end: 19 } })).body), body.subarray(10, 20));
  } finally {
    await c.close();
  }
});

test("a record whose meta is large (a 10,000-part object's, ~0.5 MiB) crosses in headers and trailer both ways", async () => {
  await withCluster(async (c) => {
    const { coord } = c.coordinator(0, { log: quiet });
    const big = JSON.stringify({ sig: "x".repeat(600_000) });
    const body = randomBytes(100_000);
    const rec = await coord.put({ bucket: "b", key: "bigmeta", meta: "{}" }, bytes(body), { finalMeta: () => big });
    await coord.settled();
    for (const n of c.nodes) assert.equal((await n.store.head("b", "bigmeta"))?.meta, big, `${n.id} stored the meta from the trailer`);
    const got = await c.coordinator(1, { log: quiet }).peers.get("node-3").get("b", "bigmeta");
    assert.equal(got.record.version, rec.version);
    assert.equal(got.record.meta, big);
    assert.deepEqual(await readAll(got.body), body);
  });
});

test("a bucket listing from a peer, packed about 1 MiB of records per stream message, is complete and in key order, with prefix, after and limit", async () => {
  await withCluster(async (c) => {
    const n2 = c.byId("node-2");
    const clock = new HlcClock("lister");
    const keys = Array.from({ length: 600 }, (_, i) => `k${String(i).padStart(4, "0")}`);
    for (const k of keys) {
      const r: ReplicaRecord = { bucket: "b", key: k, version: clock.now(), tombstone: false, size: 1, sha256: createHash("sha256").update("x").digest("hex"), meta: "{}" };
      await n2.store.put(knownWrite(r, once(Buffer.from("x"))));
    }
    const peer = c.coordinator(0, { log: quiet }).peers.get("node-2");
    const got: string[] = [];
    for await (const r of peer.listBucket("b")) got.push(r.key);
    assert.deepEqual(got, keys);
    const after: string[] = [];
    for await (const r of peer.listBucket("b", { after: "k0299", limit: 10 })) after.push(r.key);
    assert.deepEqual(after, keys.slice(300, 310));
    // Part-like records with 3 KB of meta each: 1,200 of them take several packed messages.
    const parts: ReplicaRecord[] = Array.from({ length: 1200 }, (_, i) => ({
      bucket: "b", key: `\u0001p/up/${String(i + 1).padStart(5, "0")}`, version: clock.now(), tombstone: i % 7 === 0, size: i % 7 === 0 ? 0 : 5 << 20,
      sha256: createHash("sha256").update(String(i)).digest("hex"), meta: i % 7 === 0 ? "" : JSON.stringify({ partNumber: i + 1, pad: "é\u{1F600}".repeat(1000) }),
    }));
    for (let i = 0; i < parts.length; i += 50) await Promise.all(parts.slice(i, i + 50).map((r) => n2.store.put(knownWrite({ ...r, size: 0, sha256: createHash("sha256").digest("hex") }, once()))));
    const stored = await Promise.all(parts.map((r) => n2.store.head("b", r.key)));
    const listed: ReplicaRecord[] = [];
    for await (const r of peer.listBucket("b", { prefix: "\u0001p/up/", limit: 10_000 })) listed.push(r);
    assert.deepEqual(listed, stored);
    const tail: string[] = [];
    for await (const r of peer.listBucket("b", { prefix: "\u0001p/up/", after: "\u0001p/up/01100" })) tail.push(r.key);
    assert.deepEqual(tail, parts.slice(1100).map((r) => r.key));
  });
});

test("packed records: a listing's records round-trip; anything malformed from a peer is refused", () => {
  const recs: ReplicaRecord[] = [
    { bucket: "b", key: "\u0001p/u/00001", version: "v1", tombstone: false, size: 5, sha256: "ab", meta: "{\"etag\":\"x\"}" },
    { bucket: "b", key: "\u0001p/u/00002", version: "v2", tombstone: true, size: 0, sha256: "", meta: "" },
  ];
  assert.deepEqual(unpackRecords(packRecords(recs, "\u0001p/u/"), "b", "\u0001p/u/"), recs);
  const bad = ["", "{}", "[1]", `[["k","v",false,-1,"",""]]`, `[["k","v",false,1.5,"",""]]`, `[["k","v","no",1,"",""]]`, `[["k","v",false,1,""]]`, `[["k",2,false,1,"",""]]`];
  for (const b of bad) assert.throws(() => unpackRecords(Buffer.from(b), "b", ""), (e: unknown) => e instanceof ThocError && e.code === "invalid_argument", b);
});
