import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { WatchEventsRequestSchema, type Event } from "../proto/index.js";
import { NodeHistory, decodeCursor, encodeCursor, filterOf, type EventBody } from "./history.js";

const vm = (name: string, action = "running"): EventBody => ({ kind: "vm", vm: { $typeName: "thoc.node.v1.VmEvent", name, action, status: action, previousStatus: "", triggeredBy: "user", detail: "" } });
const req = (o: Parameters<typeof create<typeof WatchEventsRequestSchema>>[1] = {}) => create(WatchEventsRequestSchema, o);
const all = filterOf(req());
const seqs = (es: Event[]) => es.map((e) => (e.kind === "missed" ? `missed:${e.missed!.count}` : Number(e.seq)));

test("events are numbered per source in order, and each carries a cursor that resumes right after it", () => {
  const h = new NodeHistory("id1", "n1", 7n);
  for (let i = 0; i < 5; i++) h.append(vm(`v${i}`));
  const past = h.replay(all, 100);
  assert.deepEqual(seqs(past), [1, 2, 3, 4, 5]);
  assert.ok(past.every((e) => e.epoch === 7n && e.nodeId === "id1" && e.node === "n1"));
  assert.deepEqual(decodeCursor(past[2]!.cursor).get("id1"), { epoch: 7n, seq: 3n });
  assert.deepEqual(seqs(h.replay(all, 100, decodeCursor(past[2]!.cursor).get("id1"))), [4, 5]);
  assert.deepEqual(seqs(h.replay(all, 2)), [4, 5], "tail");
});

test("bounded history: a cursor older than what is kept gets a missed marker with the count, then the rest", () => {
  const h = new NodeHistory("id1", "n1", 1n, 10);
  for (let i = 0; i < 25; i++) h.append(vm(`v${i}`));
  const out = h.replay(all, 100, { epoch: 1n, seq: 3n });
  assert.deepEqual(seqs(out), ["missed:12", ...Array.from({ length: 10 }, (_, i) => 16 + i)]);
  // Resuming after the marker does not repeat it.
  assert.deepEqual(seqs(h.replay(all, 100, decodeCursor(out[0]!.cursor).get("id1"))), seqs(out.slice(1)));
  assert.deepEqual(seqs(h.replay(all, 100, { epoch: 1n, seq: 15n })), seqs(out.slice(1)), "no marker when nothing was lost");
});

test("a cursor from before a restart (older epoch) gets a marker saying so, then this epoch's events", () => {
  const h = new NodeHistory("id1", "n1", 3n);
  h.append(vm("a"));
  const out = h.replay(all, 100, { epoch: 2n, seq: 40n });
  assert.equal(out[0]!.kind, "missed");
  assert.match(out[0]!.missed!.reason, /restarted since the cursor \(generation 2 -> 3\)/);
  assert.deepEqual(seqs(out.slice(1)), [1]);
});

test("filters: kinds, vm (vm events and VM audit records naming it), node (source or subject)", () => {
  const h = new NodeHistory("id1", "n1", 1n);
  h.append(vm("web"));
  h.append(vm("db"));
  h.append({ kind: "node", member: { $typeName: "thoc.node.v1.NodeEvent", id: "id3", name: "n3", action: "dead", address: "" } });
  h.append({ kind: "audit", method: "/thoc.node.v1.VmService/DeleteVm", target: { name: "web" } });
  h.append({ kind: "audit", method: "/thoc.node.v1.ImageService/DeleteImage", target: { name: "web" } });
  h.append({ kind: "audit", method: "/thoc.node.v1.VmService/CreateVm", target: { "spec.name": "db", "spec.image": "web" } });
  assert.deepEqual(seqs(h.replay(filterOf(req({ kinds: ["node,audit"] })), 100)), [3, 4, 5, 6]);
  assert.deepEqual(seqs(h.replay(filterOf(req({ vm: "db" })), 100)), [2, 6]);
  assert.deepEqual(seqs(h.replay(filterOf(req({ vm: "web" })), 100)), [1, 4]);
  assert.deepEqual(seqs(h.replay(filterOf(req({ node: "n3" })), 100)), [3]);
  assert.deepEqual(seqs(h.replay(filterOf(req({ node: "n1" })), 100)), [1, 2, 3, 4, 5, 6]);
  assert.throws(() => filterOf(req({ kinds: ["vms"] })), /unknown kind "vms"/);
});

test("bad cursors are invalid_argument; cursors round-trip", () => {
  for (const c of ["!!", Buffer.from("[1]").toString("base64url"), Buffer.from('{"a":"x.1"}').toString("base64url")]) {
    assert.throws(() => decodeCursor(c), (e: { code?: string }) => e.code === "invalid_argument");
  }
  const m = new Map([["b", { epoch: 2n, seq: 9n }], ["a", { epoch: 1n, seq: 0n }]]);
  assert.deepEqual(decodeCursor(encodeCursor(m)), m);
});

test("follow: the replay and the live events with nothing lost in between; close ends the stream", async () => {
  const h = new NodeHistory("id1", "n1", 1n);
  h.append(vm("a"));
  const ac = new AbortController();
  const got: number[] = [];
  const done = (async () => { for await (const e of h.stream(req({ follow: true }), ac.signal)) got.push(Number(e.seq)); })();
  await new Promise((r) => setImmediate(r));
  h.append(vm("b"));
  h.append(vm("c"));
  await new Promise((r) => setImmediate(r));
  h.close();
  await done;
  assert.deepEqual(got, [1, 2, 3]);
});
