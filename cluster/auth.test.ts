/**
 * Peer authentication binds a call to the node it is for and the request it
 * carries: a header seen on the wire is good for one call, on one node, with
 * one body (the SyncTable injection of issue 13 replayed a header to another
 * node with another body).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { ThocError } from "../errors/index.js";
import { PeerAuth } from "./auth.js";

const keys = [randomBytes(32).toString("base64")];
const node = (nodeId: string, now?: () => number) => new PeerAuth({ clusterName: "c", keys, nodeId, ...(now ? { now } : {}) });
const SYNC = "/thoc.node.v1.ObjectStoreService/SyncTable";
const body = (s: string) => new TextEncoder().encode(s);
const refused = (re: RegExp) => (e: ThocError) => e.code === "unauthenticated" && re.test(e.message);

test("the same call is accepted once, on the node it was signed for", () => {
  const caller = node("c1"), a = node("a");
  const h = caller.sign(SYNC, "a", body("pull"));
  assert.equal(a.verify(SYNC, h, body("pull")), "c1");
  assert.throws(() => a.verify(SYNC, h, body("pull")), refused(/replayed/));
});

test("a header replayed to another node is refused, with or without its target rewritten", () => {
  const caller = node("c1"), b = node("b");
  const h = caller.sign(SYNC, "a", body("pull"));
  assert.throws(() => b.verify(SYNC, h, body("pull")), refused(/signed for node "a", this is node b/));
  // An attacker can rewrite the target field; the MAC is over the id of the node verifying it.
  const parts = h.split(".");
  parts[3] = Buffer.from("b").toString("base64url");
  assert.throws(() => b.verify(SYNC, parts.join("."), body("pull")), refused(/bad signature/));
});

test("a header with another request body is refused", () => {
  const caller = node("c1"), a = node("a");
  const h = caller.sign(SYNC, "a", body("pull"));
  assert.throws(() => a.verify(SYNC, h, body("inject s3 key")), refused(/bad signature/));
  assert.throws(() => a.verify(SYNC, h, new Uint8Array(0)), refused(/bad signature/));
  // The server, not the header, says whether a body is bound: a streaming call's header does not pass for a unary call.
  const stream = caller.sign(SYNC, "a");
  assert.throws(() => a.verify(SYNC, stream, body("pull")), refused(/bad signature/));
  // ... and the untouched call still goes through (the refusals above spent nothing).
  assert.equal(a.verify(SYNC, h, body("pull")), "c1");
});

test("a streamed call is bound to its target and method", () => {
  const caller = node("c1"), a = node("a");
  const put = "/thoc.node.v1.ObjectStoreService/PutReplica";
  assert.equal(a.verify(put, caller.sign(put, "a")), "c1");
  assert.throws(() => a.verify(SYNC, caller.sign(put, "a")), refused(/bad signature/));
  assert.throws(() => node("b").verify(put, caller.sign(put, "a")), refused(/signed for node/));
});

test("an old v1 header (call-only MAC) is refused with a message that says why", () => {
  const a = node("a");
  assert.throws(() => a.verify(SYNC, `v1.${Date.now()}.nonce.sig.c1`, body("pull")), refused(/older thoc-node/));
  assert.throws(() => a.verify(SYNC, "v2.1.n", body("pull")), refused(/malformed/));
  assert.throws(() => a.verify(SYNC, undefined, body("pull")), refused(/x-thoc-peer-auth/));
});

test("the window: a header signed further than maxSkew away is refused", () => {
  let t = 1_000_000;
  const caller = node("c1", () => t), a = node("a", () => t);
  const h = caller.sign(SYNC, "a", body("pull"));
  t += 60_001;
  assert.throws(() => a.verify(SYNC, h, body("pull")), refused(/NTP/));
});
