import { test, after } from "node:test";
import assert from "node:assert/strict";
import { EchoService } from "../proto/gen/thoc/test/v1/echo_pb.js";
import { ThocError } from "../errors/index.js";
import { statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { RpcServer, createClient, requestBytes, GrpcStatus, type Caller, type ImplOf } from "./index.js";

const calls: [string, number][] = [];
const impl: ImplOf<typeof EchoService> = {
  async echo(req) {
    if (req.failWith) throw new ThocError(req.failWith as "not_found", `asked to fail: ${req.failWith}`, { key: "k1" });
    return { text: req.text };
  },
  async *count(req, ctx) {
    for (let i = 0; i < req.n && !ctx.signal.aborted; i++) yield { text: String(i) };
  },
  async collect(reqs) {
    const parts: string[] = [];
    for await (const r of reqs) parts.push(r.text);
    return { text: parts.join(",") };
  },
  async *chat(reqs) {
    for await (const r of reqs) yield { text: r.text.toUpperCase() };
  },
};

const server = new RpcServer({ observe: (m, code) => calls.push([m, code]) }).add(EchoService, impl);
const port = await server.listen("127.0.0.1", 0);
server.setAllServing("SERVING");
const client = createClient(EchoService, `127.0.0.1:${port}`, { defaultTimeoutMs: 5000 });
after(async () => { client.close(); await server.shutdown(1000); });

async function* gen(items: string[]) { for (const text of items) yield { text }; }

test("every method kind round-trips through the descriptor adapter", async () => {
  assert.equal((await client.echo({ text: "hi" })).text, "hi");
  const got: string[] = [];
  for await (const r of client.count({ n: 5 })) got.push(r.text);
  assert.deepEqual(got, ["0", "1", "2", "3", "4"]);
  assert.equal((await client.collect(gen(["a", "b", "c"]))).text, "a,b,c");
  const chat: string[] = [];
  for await (const r of client.chat(gen(["x", "y"]))) chat.push(r.text);
  assert.deepEqual(chat, ["X", "Y"]);
});

test("ThocErrors reach the client as gRPC status + message + details, and are counted", async () => {
  await assert.rejects(client.echo({ failWith: "not_found" }), (e: ThocError) => e.code === "not_found" && e.message === "asked to fail: not_found");
  await assert.rejects(client.echo({ failWith: "resource_exhausted" }), (e: ThocError) => e.grpcStatus === GrpcStatus.RESOURCE_EXHAUSTED);
  assert.ok(calls.some(([m, c]) => m === "thoc.test.v1.EchoService/Echo" && c === GrpcStatus.NOT_FOUND));
  assert.ok(calls.some(([m, c]) => m === "thoc.test.v1.EchoService/Echo" && c === GrpcStatus.OK));
});

test("a client abort cancels a server stream", async () => {
  const ac = new AbortController();
  const got: string[] = [];
  await assert.rejects((async () => {
    for await (const r of client.count({ n: 1_000_000 }, { signal: ac.signal })) {
      got.push(r.text);
      if (got.length === 3) ac.abort();
    }
  })(), (e: ThocError) => e.code === "cancelled");
  assert.ok(got.length >= 3 && got.length < 1_000_000);
});

test("binding a port in use is a failed_precondition with a readable message", async () => {
  const other = new RpcServer().add(EchoService, impl);
  await assert.rejects(other.listen("127.0.0.1", port), (e: ThocError) => e.code === "failed_precondition" && /address already in use/.test(e.message));
  await other.shutdown(100);
});

test("a client's metadata hook sees the request bytes the server receives (requestBytes), for unary and server-streaming calls only", async () => {
  const seen: { path: string; request?: Uint8Array }[] = [];
  const got: (Uint8Array | undefined)[] = [];
  const hooked: ImplOf<typeof EchoService> = {
    async echo(req) { got.push(requestBytes(req)); return { text: req.text }; },
    async *count(req) { got.push(requestBytes(req)); yield { text: "0" }; },
    async collect(reqs) { for await (const r of reqs) got.push(requestBytes(r)); return { text: "" }; },
    async *chat() { /* unused */ },
  };
  const s = new RpcServer().add(EchoService, hooked);
  const p = await s.listen("127.0.0.1", 0);
  const c = createClient(EchoService, `127.0.0.1:${p}`, { defaultTimeoutMs: 5000, metadata: (call) => { seen.push(call); return {}; } });
  try {
    await c.echo({ text: "héllo" });
    for await (const _ of c.count({ n: 1 })) { /* drain */ }
    await c.collect(gen(["a"]));
    assert.deepEqual(seen.map((x) => x.path), ["/thoc.test.v1.EchoService/Echo", "/thoc.test.v1.EchoService/Count", "/thoc.test.v1.EchoService/Collect"]);
    assert.ok(seen[0]!.request && got[0] && Buffer.from(seen[0]!.request).equals(Buffer.from(got[0])), "echo: the same bytes on both ends");
    assert.ok(Buffer.from(seen[0]!.request!).includes(Buffer.from("héllo")));
    assert.ok(seen[1]!.request && got[1] && Buffer.from(seen[1]!.request).equals(Buffer.from(got[1])), "count: the same bytes on both ends");
    assert.equal(seen[2]!.request, undefined, "a streamed request has no single body to show");
    assert.equal(got[2], undefined, "nor is one kept");
  } finally {
    c.close();
    await s.shutdown(1000);
  }
});

test("the authorize hook runs before every handler, streams included; the finished hook sees each call's request and outcome", async () => {
  const ran: string[] = [];
  const seen: [string, number, unknown][] = [];
  const guarded: ImplOf<typeof EchoService> = {
    async echo(req) { ran.push("echo"); return { text: req.text }; },
    async *count(req) { ran.push("count"); for (let i = 0; i < req.n; i++) yield { text: String(i) }; },
    async collect(reqs) { ran.push("collect"); for await (const _ of reqs) { /* drain */ } return { text: "" }; },
    async *chat(reqs) { ran.push("chat"); for await (const r of reqs) yield { text: r.text }; },
  };
  const s = new RpcServer({
    authorize: (method, ctx) => { if (ctx.metadata.get("x-let-in")[0] !== "yes") throw new ThocError("permission_denied", `no entry to ${method}`); },
    finished: (c) => seen.push([c.method, c.code, (c.request as { text?: string } | undefined)?.text]),
  }).add(EchoService, guarded);
  const p = await s.listen("127.0.0.1", 0);
  const c = createClient(EchoService, `127.0.0.1:${p}`, { defaultTimeoutMs: 5000 });
  try {
    const denied = (e: ThocError) => e.code === "permission_denied" && /no entry to \/thoc\.test\.v1\.EchoService\//.test(e.message);
    await assert.rejects(c.echo({ text: "u" }), denied);
    await assert.rejects((async () => { for await (const _ of c.count({ n: 2 })) { /* none */ } })(), denied);
    await assert.rejects(c.collect(gen(["a"])), denied);
    await assert.rejects((async () => { for await (const _ of c.chat(gen(["b"]))) { /* none */ } })(), denied);
    assert.deepEqual(ran, [], "no handler ran for a refused call");
    const md = { metadata: { "x-let-in": "yes" } };
    assert.equal((await c.echo({ text: "in" }, md)).text, "in");
    assert.equal((await c.collect(gen(["first", "second"]), md)).text, "");
    assert.deepEqual(ran, ["echo", "collect"]);
    assert.deepEqual(seen.filter(([m]) => /Echo$|Collect$/.test(m)), [
      ["/thoc.test.v1.EchoService/Echo", GrpcStatus.PERMISSION_DENIED, "u"],
      ["/thoc.test.v1.EchoService/Collect", GrpcStatus.PERMISSION_DENIED, undefined],
      ["/thoc.test.v1.EchoService/Echo", GrpcStatus.OK, "in"],
      ["/thoc.test.v1.EchoService/Collect", GrpcStatus.OK, "first"],
    ]);
  } finally {
    c.close();
    await s.shutdown(500);
  }
});

test("listenLocal: calls over the unix socket carry the client's uid, gid and pid (SO_PEERCRED); the socket is 0600 without a group", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-rpc-local-"));
  const callers: Caller[] = [];
  const s = new RpcServer({ authorize: (_m, ctx) => { callers.push(ctx.caller); } }).add(EchoService, impl);
  await s.listen("127.0.0.1", 0);
  const sock = path.join(dir, "api.sock");
  await s.listenLocal(sock);
  const c = createClient(EchoService, `unix:${sock}`, { defaultTimeoutMs: 5000 });
  try {
    assert.equal(statSync(sock).mode & 0o777, 0o600);
    assert.equal((await c.echo({ text: "local" })).text, "local");
    const me = callers[0];
    assert.ok(me?.kind === "local", JSON.stringify(me));
    assert.deepEqual([me.uid, me.gid, me.pid], [process.getuid!(), process.getgid!(), process.pid]);
  } finally {
    c.close();
    await s.shutdown(500);
    await rm(dir, { recursive: true, force: true });
  }
});
