import { test, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import net from "node:net";
import { createClient } from "../../rpc/index.js";
import { ObjectStoreService } from "../../proto/index.js";
import { ThocError } from "../../errors/index.js";
import { PEER_AUTH_HEADER, PeerAuth, methodPath } from "../../cluster/index.js";
import { Peer, Peers } from "./peer.js";
import { HlcClock } from "../../cluster/index.js";
import { knownWrite, EMPTY_SHA256 } from "./replica-store.js";
import { TEST_CLUSTER, bytes, readAll, startTestCluster, testKey } from "./fixture.js";
import { create, toBinary, type DescService } from "@bufbuild/protobuf";

const c = await startTestCluster(1);
const node = c.nodes[0]!;
const raw = createClient(ObjectStoreService, node.address, { defaultTimeoutMs: 3000 });
const auth = new PeerAuth({ clusterName: TEST_CLUSTER, keys: node.keys, nodeId: "caller" });
const desc = ObjectStoreService as unknown as DescService;
/** The request bytes a client sends for method m. */
const encode = (m: string, req: object) => { const d = desc.methods.find((x) => x.localName === m)!; return toBinary(d.input, create(d.input, req as never)); };
/** Peer-auth metadata for method m to this node (req: the request of a unary call; none for a streamed one). */
const sign = (m: string, req?: object, a = auth) => ({ [PEER_AUTH_HEADER]: a.sign(methodPath(desc, m), node.id, req ? encode(m, req) : undefined) });
const HEAD = { bucket: "b", key: "k" };
after(async () => { raw.close(); await c.close(); });

const sha = (s: string) => createHash("sha256").update(s).digest("hex");
const version = new HlcClock("writer").now();
const rec = (key: string, body: string, withDigest = true) => ({
  bucket: "b", key, version, tombstone: false, meta: "{}",
  size: BigInt(withDigest ? body.length : 0), sha256: withDigest ? sha(body) : "",
});

async function* stream(key: string, parts: (string | { size: number; sha256: string })[], opts: { withDigest?: boolean; body?: string; hang?: AbortSignal } = {}) {
  const body = opts.body ?? parts.filter((p): p is string => typeof p === "string").join("");
  yield { part: { case: "header" as const, value: { record: rec(key, body, opts.withDigest ?? true), hintFor: "", clock: "" } } };
  for (const p of parts) {
    if (typeof p === "string") yield { part: { case: "chunk" as const, value: Buffer.from(p) } };
    else yield { part: { case: "trailer" as const, value: { size: BigInt(p.size), sha256: p.sha256 } } };
  }
  const hang = opts.hang;
  if (hang) await new Promise((r) => hang.addEventListener("abort", r, { once: true }));
}

test("unauthenticated, wrongly keyed, stale and replayed calls get UNAUTHENTICATED", async () => {
  await assert.rejects(raw.headReplica({ bucket: "b", key: "k" }), (e: ThocError) => e.code === "unauthenticated" && /x-thoc-peer-auth/.test(e.message));
  await assert.rejects(raw.putReplica(stream("k", ["abc", { size: 3, sha256: sha("abc") }])), (e: ThocError) => e.code === "unauthenticated");
  const other = new PeerAuth({ clusterName: TEST_CLUSTER, keys: [testKey()], nodeId: "intruder" });
  await assert.rejects(raw.headReplica(HEAD, { metadata: sign("headReplica", HEAD, other) }),
    (e: ThocError) => e.code === "unauthenticated" && /bad signature/.test(e.message));
  const otherCluster = new PeerAuth({ clusterName: "elsewhere", keys: node.keys, nodeId: "x" });
  await assert.rejects(raw.headReplica(HEAD, { metadata: sign("headReplica", HEAD, otherCluster) }), (e: ThocError) => e.code === "unauthenticated");
  // Signed for another method: refused.
  await assert.rejects(raw.headReplica(HEAD, { metadata: sign("deleteReplica", HEAD) }), (e: ThocError) => e.code === "unauthenticated");
  // Signed for another request: refused.
  await assert.rejects(raw.headReplica(HEAD, { metadata: sign("headReplica", { bucket: "b", key: "other" }) }), (e: ThocError) => e.code === "unauthenticated" && /bad signature/.test(e.message));
  const stale = new PeerAuth({ clusterName: TEST_CLUSTER, keys: node.keys, nodeId: "x", now: () => Date.now() - 10 * 60_000 });
  await assert.rejects(raw.headReplica(HEAD, { metadata: sign("headReplica", HEAD, stale) }), (e: ThocError) => e.code === "unauthenticated" && /NTP/.test(e.message));
  const md = sign("headReplica", HEAD);
  assert.equal((await raw.headReplica(HEAD, { metadata: md })).record, undefined);
  await assert.rejects(raw.headReplica(HEAD, { metadata: md }), (e: ThocError) => e.code === "unauthenticated" && /replayed/.test(e.message));
  // Rotation: the first key signs, every key verifies.
  const newKey = testKey();
  const rotated = new PeerAuth({ clusterName: TEST_CLUSTER, keys: [newKey, ...node.keys], nodeId: "new" });
  const oldOnly = new PeerAuth({ clusterName: TEST_CLUSTER, keys: node.keys, nodeId: "n" });
  assert.throws(() => oldOnly.verify("/m", rotated.sign("/m", "n")), (e: ThocError) => e.code === "unauthenticated");
  const both = new PeerAuth({ clusterName: TEST_CLUSTER, keys: [...node.keys, newKey], nodeId: "h" });
  assert.equal(both.verify("/m", rotated.sign("/m", "h")), "new");
  assert.equal(both.verify("/m", oldOnly.sign("/m", "h")), "n");
  assert.equal(node.store.records().length, 0);
});

test("corrupt, short, long, trailer-less and cancelled streams are rejected and store nothing", async () => {
  const put = (s: AsyncIterable<never> | ReturnType<typeof stream>, signal?: AbortSignal) => raw.putReplica(s as never, { metadata: sign("putReplica"), signal });
  const dataLoss = (e: ThocError) => e.code === "data_loss" && /nothing stored/.test(e.message);
  await assert.rejects(put(stream("wrong-sum", ["hello", { size: 5, sha256: sha("HELLO") }], { withDigest: false })), dataLoss);
  await assert.rejects(put(stream("short", ["hel", { size: 5, sha256: sha("hello") }], { withDigest: false })), dataLoss);
  await assert.rejects(put(stream("header-digest", ["hellO", { size: 5, sha256: sha("hellO") }], { body: "hello" })), dataLoss, "body disagrees with the header's digest");
  await assert.rejects(put(stream("long", ["hello", "!", { size: 6, sha256: sha("hello!") }], { body: "hello" })), dataLoss);
  await assert.rejects(put(stream("no-trailer", ["hello"], { withDigest: false })), (e: ThocError) => e.code === "data_loss" && /before its trailer/.test(e.message));
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 200);
  await assert.rejects(put(stream("cancelled", ["hel"], { withDigest: false, hang: ac.signal }), ac.signal), (e: ThocError) => e.code === "cancelled");
  // A sender that goes silent mid-stream is dropped by the receiver after its idle timeout (2 s here).
  const silent = new AbortController();
  const t0 = Date.now();
  await assert.rejects(put(stream("silent", ["hel"], { withDigest: false, hang: silent.signal })),
    (e: ThocError) => e.code === "deadline_exceeded" && /went silent/.test(e.message));
  silent.abort();
  assert.ok(Date.now() - t0 >= 1900 && Date.now() - t0 < 4000);
  await assert.rejects(put((async function* () { yield { part: { case: "chunk" as const, value: Buffer.from("x") } }; })() as never),
    (e: ThocError) => e.code === "invalid_argument" && /first message must be the header/.test(e.message));
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(node.store.records(), [], "nothing was stored");
  // The same stream done right is stored, with size and digest from the trailer.
  assert.equal((await put(stream("ok", ["hel", "lo", { size: 5, sha256: sha("hello") }], { withDigest: false }))).applied, true);
  const stored = await node.store.head("b", "ok");
  assert.equal(stored?.sha256, sha("hello"));
  assert.equal(stored?.size, 5);
});

test("Peer: streaming get verifies the body; ring exchange merges", async () => {
  const peers = new Peers({ auth, directory: { address: () => node.address }, hlc: new HlcClock("caller"), timeoutMs: 2000 });
  try {
    const p = peers.get("node-1");
    const body = "x".repeat(5000);
    const r = { bucket: "b", key: "big", version: new HlcClock("w").now(), tombstone: false, size: body.length, sha256: sha(body), meta: "{}" };
    assert.equal((await p.put(knownWrite(r, bytes(body)))).applied, true);
    const got = await p.get("b", "big");
    assert.equal((await readAll(got.body)).toString(), body, "re-chunked in 1 KiB messages and reassembled");
    assert.deepEqual(await p.head("b", "big"), r);
    await assert.rejects(p.get("b", "missing"), (e: ThocError) => e.code === "not_found");
    // A replica whose disk returns different bytes: the reader notices before the last byte is handed on.
    const realGet = node.store.get.bind(node.store);
    node.store.get = async (b, k) => { const g = await realGet(b, k); return g && { record: g.record, body: bytes("y".repeat(5000)) }; };
    try {
      await assert.rejects(async () => readAll((await p.get("b", "big")).body), (e: ThocError) => e.code === "data_loss" && /corrupt/.test(e.message));
    } finally {
      node.store.get = realGet;
    }
    const del = await p.delete("b", "big", new HlcClock("z").now());
    assert.equal(del.applied, true);
    assert.equal((await p.head("b", "big"))?.sha256, EMPTY_SHA256);
    const ring = await p.getRing();
    assert.deepEqual(ring.members.map((m) => m.nodeId), ["node-1"]);
    const merged = await p.mergeRing({ members: [...ring.members, { nodeId: "node-9", name: "nine", weight: 2, addedAt: new HlcClock("q").now(), updatedAt: new HlcClock("q").now() }] }, "");
    assert.deepEqual(merged.members.map((m) => m.nodeId), ["node-1", "node-9"]);
    assert.equal(node.ring.state().ring(8).has("node-9"), true);
  } finally {
    peers.close();
  }
});

test("every peer call has a deadline: a peer that accepts and never answers fails in peerTimeout", async () => {
  const sockets: net.Socket[] = [];
  const hole = net.createServer((s) => { sockets.push(s); });
  await new Promise<void>((r) => hole.listen(0, "127.0.0.1", r));
  const port = (hole.address() as net.AddressInfo).port;
  const peers = new Peers({ auth, directory: { address: () => `127.0.0.1:${port}` }, hlc: new HlcClock("caller"), timeoutMs: 300 });
  try {
    const p: Peer = peers.get("hole");
    const t0 = Date.now();
    await assert.rejects(p.head("b", "k"), (e: ThocError) => e.code === "deadline_exceeded");
    await assert.rejects(p.put(knownWrite({ bucket: "b", key: "k", version, tombstone: false, size: 1, sha256: sha("x"), meta: "" }, bytes("x"))),
      (e: ThocError) => e.code === "deadline_exceeded" && /no progress for 300 ms/.test(e.message));
    await assert.rejects(p.get("b", "k"), (e: ThocError) => e.code === "deadline_exceeded");
    const took = Date.now() - t0;
    assert.ok(took >= 850 && took < 3000, `three calls gave up after about 300 ms each (${took} ms)`);
  } finally {
    peers.close();
    for (const s of sockets) s.destroy();
    hole.close();
  }
});
