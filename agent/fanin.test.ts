import { test } from "node:test";
import assert from "node:assert/strict";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { WatchEventsRequestSchema, type Event } from "../proto/index.js";
import { fanIn, mergeByTime, type EventSource } from "./fanin.js";
import { NodeHistory, decodeCursor, type EventBody } from "./history.js";

const vm = (name: string): EventBody => ({ kind: "vm", vm: { $typeName: "thoc.node.v1.VmEvent", name, action: "running", status: "running", previousStatus: "", triggeredBy: "user", detail: "" } });
const req = (o: MessageInitShape<typeof WatchEventsRequestSchema> = {}) => create(WatchEventsRequestSchema, o);
const tick = () => new Promise((r) => setTimeout(r, 5));
const label = (e: Event) => (e.kind === "missed" ? `${e.node}:missed` : `${e.node}:${e.seq}`);

/** Three nodes' histories; a peer's stream can be broken (as a dead TCP connection would) and its member taken down. */
function cluster() {
  let t = 0;
  const now = () => ++t;
  const h = new Map(["a", "b", "c"].map((id) => [id, new NodeHistory(id, `n-${id}`, 1n, 1000, now)]));
  const up = new Set(["b", "c"]);
  const breakers = new Map<string, AbortController>();
  const listeners = new Set<() => void>();
  const opened: { id: string; cursor: string }[] = [];
  const source = (id: string): EventSource => (r, signal) => {
    opened.push({ id, cursor: r.cursor });
    if (id !== "a" && !up.has(id)) throw new Error(`${id} unreachable`);
    const ac = new AbortController();
    breakers.set(id, ac);
    signal.addEventListener("abort", () => ac.abort(), { once: true });
    return (async function* () {
      const it = h.get(id)!.stream(r, ac.signal)[Symbol.asyncIterator]();
      for (;;) {
        const n = await it.next();
        if (ac.signal.aborted && id !== "a" && !signal.aborted) throw new Error("connection reset");
        if (n.done) return;
        yield n.value;
      }
    })();
  };
  return {
    h, up, opened,
    deps: {
      self: "a", local: source("a"), peer: source, members: () => [...up], retryMs: 5,
      onMembers: (fn: () => void) => { listeners.add(fn); return () => listeners.delete(fn); },
    },
    cut(id: string) { breakers.get(id)?.abort(); },
    change() { for (const l of listeners) l(); },
  };
}

async function collect(it: AsyncIterable<Event>, until: (got: Event[]) => boolean, ac: AbortController): Promise<Event[]> {
  const got: Event[] = [];
  for await (const e of it) {
    got.push(e);
    if (until(got)) { ac.abort(); break; }
  }
  return got;
}

test("without follow: every member's events, merged by time, each source in its own order, with a composite cursor", async () => {
  const c = cluster();
  c.h.get("a")!.append(vm("1"));
  c.h.get("b")!.append(vm("2"));
  c.h.get("c")!.append(vm("3"));
  c.h.get("a")!.append(vm("4"));
  const got: Event[] = [];
  for await (const e of fanIn(c.deps, req(), new AbortController().signal)) got.push(e);
  assert.deepEqual(got.map(label), ["n-a:1", "n-b:1", "n-c:1", "n-a:2"]);
  assert.deepEqual(decodeCursor(got.at(-1)!.cursor), new Map([["a", { epoch: 1n, seq: 2n }], ["b", { epoch: 1n, seq: 1n }], ["c", { epoch: 1n, seq: 1n }]]));
  const local: Event[] = [];
  for await (const e of fanIn(c.deps, req({ local: true }), new AbortController().signal)) local.push(e);
  assert.deepEqual(local.map(label), ["n-a:1", "n-a:2"]);
});

test("follow: a broken peer stream is reopened from its last position (no gap, no duplicate); a resumed cursor continues exactly", { timeout: 5000 }, async () => {
  const c = cluster();
  c.h.get("b")!.append(vm("b1"));
  const ac = new AbortController();
  const p = collect(fanIn(c.deps, req({ follow: true }), ac.signal), (g) => g.length === 5, ac);
  await tick();
  c.h.get("b")!.append(vm("b2"));
  await tick();
  c.cut("b");
  c.h.get("b")!.append(vm("b3")); // while the stream is down
  c.h.get("c")!.append(vm("c1"));
  await tick(); await tick();
  c.h.get("b")!.append(vm("b4"));
  const got = await p;
  assert.deepEqual(got.map(label).sort(), ["n-b:1", "n-b:2", "n-b:3", "n-b:4", "n-c:1"]);
  assert.deepEqual(got.filter((e) => e.nodeId === "b").map((e) => Number(e.seq)), [1, 2, 3, 4], "b in order");
  const reopened = c.opened.filter((o) => o.id === "b").map((o) => decodeCursor(o.cursor).get("b")?.seq);
  assert.deepEqual(reopened, [undefined, 2n], "b's stream reopened after the last event it delivered");

  // A client that reconnects with the cursor of the 3rd event gets exactly the rest, and then new ones.
  const cursor = got[2]!.cursor;
  const seen = new Set(got.slice(0, 3).map(label));
  c.h.get("a")!.append(vm("a1"));
  const ac2 = new AbortController();
  const rest = await collect(fanIn(c.deps, req({ follow: true, cursor }), ac2.signal), (g) => g.length === 3, ac2);
  assert.deepEqual(rest.map(label).sort(), [...got.slice(3).map(label), "n-a:1"].sort());
  assert.ok(rest.every((e) => !seen.has(label(e))));
});

test("follow: a member that goes down is skipped and picked up again, from the cursor, when it is back", { timeout: 5000 }, async () => {
  const c = cluster();
  c.up.delete("c");
  const ac = new AbortController();
  const p = collect(fanIn(c.deps, req({ follow: true }), ac.signal), (g) => g.some((e) => e.nodeId === "c" && e.seq === 2n), ac);
  await tick();
  c.h.get("a")!.append(vm("a1"));
  c.h.get("c")!.append(vm("c1"));
  c.h.get("c")!.append(vm("c2"));
  await tick();
  c.up.add("c");
  c.change();
  const got = await p;
  assert.deepEqual(got.map(label), ["n-a:1", "n-c:1", "n-c:2"]);
});

test("an event at or before a source's position is dropped (a peer that replays from the start gives no duplicates)", async () => {
  const c = cluster();
  for (const x of ["1", "2", "3"]) c.h.get("b")!.append(vm(x));
  const replaying: EventSource = (r, signal) => c.h.get("b")!.stream({ ...r, cursor: "" }, signal);
  const deps = { ...c.deps, peer: (id: string) => (id === "b" ? replaying : c.deps.peer(id)) };
  const first: Event[] = [];
  for await (const e of fanIn(deps, create(WatchEventsRequestSchema), new AbortController().signal)) first.push(e);
  const again: Event[] = [];
  for await (const e of fanIn(deps, create(WatchEventsRequestSchema, { cursor: first[1]!.cursor }), new AbortController().signal)) again.push(e);
  assert.deepEqual(again.map(label), ["n-b:3"]);
});

test("mergeByTime keeps a source's order even when its clock stepped back", () => {
  const e = (node: string, t: number) => ({ node, timeMs: BigInt(t) }) as Event;
  const out = mergeByTime([[e("a", 5), e("a", 1)], [e("b", 3)]]);
  assert.deepEqual(out.map((x) => `${x.node}${x.timeMs}`), ["b3", "a5", "a1"]);
});
