/**
 * Issue 13, item 8, against two real production-mode agents (a cluster key of
 * their own, plaintext gRPC on loopback, where a header can be read off the
 * wire): a peer-auth header from a call to node A, replayed within its 60 s
 * window to node B with another body, used to be accepted — a SyncTable push
 * that injected an S3 key into the s3keys table, which then spread to every
 * node. The header is now bound to its target and request, so:
 *  - the captured header replayed to B (as is, or with its target field
 *    rewritten to B) with an injected key is refused, and the key signs
 *    nothing on either node;
 *  - a header signed for A and never delivered (a man in the middle held it)
 *    does not carry another body to A;
 *  - SyncTable hands its entries (S3 secrets) to no unauthenticated or
 *    wrongly bound caller;
 *  - control: the same push signed for B and that body is accepted and the key
 *    works through both nodes (so the refusals above could have failed).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as s3 from "@aws-sdk/client-s3";
import { create, toBinary } from "@bufbuild/protobuf";
import { HlcClock, PEER_AUTH_HEADER, PeerAuth, signer } from "../cluster/index.js";
import { ObjectStoreService } from "../proto/index.js";
import { createClient, type OutgoingCall } from "../rpc/index.js";
import { startCluster, waitFor, type AgentProcess, type Cluster } from "./harness.js";
import { S3_ENV, nodeIdOf, s3client, waitRing } from "./objectstore-util.js";

let cluster: Cluster;
let a: AgentProcess, b: AgentProcess;
let idA: string, idB: string;

before(async () => {
  // Plaintext on loopback, no cluster PKI: where the cluster-key MAC is the only thing that tells a peer
  // from a stranger (with the PKI, mTLS refuses the stranger before the MAC is looked at).
  cluster = await startCluster(2, { dev: false, pki: false, env: S3_ENV });
  [a, b] = cluster.agents as [AgentProcess, AgentProcess];
  await waitRing(cluster.agents, ["n1", "n2"]);
  [idA, idB] = [await nodeIdOf(a), await nodeIdOf(b)];
});
after(async () => cluster?.stop());

/** A peer of this cluster (it holds the cluster key) whose client to `target` records every header it sends: the wire tap. */
function tappedPeer(to: AgentProcess, target: string) {
  const sign = signer(new PeerAuth({ clusterName: "thoc", keys: [to.clusterKey], nodeId: "n-honest" }), target);
  const seen: string[] = [];
  const client = createClient(ObjectStoreService, to.grpcAddress, {
    defaultTimeoutMs: 5000,
    metadata: (call: OutgoingCall) => { const md = sign(call); seen.push(md[PEER_AUTH_HEADER]!); return md; },
  });
  return { client, seen };
}

const injected = (id: string) => ({
  key: id, version: new HlcClock("attacker").now(), deleted: false,
  value: JSON.stringify({ accessKeyId: id, secretKey: "attacker-chosen-secret-0123456789abcdefgh", owner: "root", description: "", createdAt: Date.now() }),
});

async function keyWorks(x: AgentProcess, id: string): Promise<boolean> {
  try {
    await s3client(x, id, "attacker-chosen-secret-0123456789abcdefgh").send(new s3.ListBucketsCommand({}));
    return true;
  } catch (err) {
    assert.equal((err as { name?: string }).name, "InvalidAccessKeyId", `${x.name}: ${(err as Error).message}`);
    return false;
  }
}

const refused = (e: { code?: string }) => e.code === "unauthenticated";

test("a SyncTable header captured from a call to A injects no S3 key through B, nor another body through A", async () => {
  const tap = tappedPeer(a, idA);
  const raw = createClient(ObjectStoreService, b.grpcAddress, { defaultTimeoutMs: 5000 });
  const rawA = createClient(ObjectStoreService, a.grpcAddress, { defaultTimeoutMs: 5000 });
  try {
    // An honest pull from A, read off the wire.
    await tap.client.syncTable({ table: "s3keys", digest: "x", entries: [] });
    const captured = tap.seen.at(-1)!;
    const evil = { table: "s3keys", digest: "", entries: [injected("THOCINJECTEDVIABNODE")] };
    await assert.rejects(raw.syncTable(evil, { metadata: { [PEER_AUTH_HEADER]: captured } }), refused, "replayed as is");
    const parts = captured.split(".");
    parts[3] = Buffer.from(idB).toString("base64url");
    await assert.rejects(raw.syncTable(evil, { metadata: { [PEER_AUTH_HEADER]: parts.join(".") } }), refused, "replayed with its target rewritten to B");

    // A man in the middle holds back an honest push to A and sends its header with his own body.
    const held = signer(new PeerAuth({ clusterName: "thoc", keys: [a.clusterKey], nodeId: "n-honest" }), idA);
    const honest = { table: "s3keys", digest: "", entries: [] };
    const desc = ObjectStoreService.method.syncTable;
    const header = held({ path: `/${ObjectStoreService.typeName}/${desc.name}`, method: desc, request: toBinary(desc.input, create(desc.input, honest)) })[PEER_AUTH_HEADER]!;
    const evilA = { table: "s3keys", digest: "", entries: [injected("THOCINJECTEDVIAANODE")] };
    await assert.rejects(rawA.syncTable(evilA, { metadata: { [PEER_AUTH_HEADER]: header } }), refused, "held-back header with another body");

    for (const x of [a, b]) {
      assert.equal(await keyWorks(x, "THOCINJECTEDVIABNODE"), false, `injected key through ${x.name}`);
      assert.equal(await keyWorks(x, "THOCINJECTEDVIAANODE"), false, `injected key through ${x.name}`);
    }

    // Control: the same push, signed for B and this body, is taken and spreads (so the refusals above could fail).
    const ok = tappedPeer(b, idB);
    try {
      await ok.client.syncTable({ table: "s3keys", digest: "", entries: [injected("THOCCONTROLSIGNEDB01")] });
    } finally {
      ok.client.close();
    }
    await waitFor("the properly signed key works through both nodes", async () => (await keyWorks(b, "THOCCONTROLSIGNEDB01")) && keyWorks(a, "THOCCONTROLSIGNEDB01"), 20_000, 200);
  } finally {
    tap.client.close();
    raw.close();
    rawA.close();
  }
});

test("SyncTable gives its entries (S3 secrets) to no unauthenticated or wrongly bound caller", async () => {
  const tap = tappedPeer(a, idA);
  const raw = createClient(ObjectStoreService, b.grpcAddress, { defaultTimeoutMs: 5000 });
  try {
    const pull = { table: "s3keys", digest: "", entries: [] };
    // Control: a peer signed for A gets A's keys, secrets included — what must not leak.
    const mine = await tap.client.syncTable(pull);
    assert.ok(mine.entries.some((e) => e.value.includes("secretKey")), "a signed pull returns the key table");
    const captured = tap.seen.at(-1)!;
    await assert.rejects(raw.syncTable(pull), (e: { code?: string; message?: string }) => refused(e) && /x-thoc-peer-auth/.test(e.message ?? ""), "no header");
    await assert.rejects(raw.syncTable(pull, { metadata: { [PEER_AUTH_HEADER]: captured } }), refused, "A's header, same body, to B");
    const other = new PeerAuth({ clusterName: "thoc", keys: [Buffer.alloc(32, 9).toString("base64")], nodeId: "n-intruder" });
    const wrongKey = createClient(ObjectStoreService, b.grpcAddress, { defaultTimeoutMs: 5000, metadata: signer(other, idB) });
    await assert.rejects(wrongKey.syncTable(pull), refused, "another cluster key").finally(() => wrongKey.close());
  } finally {
    tap.client.close();
    raw.close();
  }
});
