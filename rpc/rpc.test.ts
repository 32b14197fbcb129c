import { test, after } from "node:test";
import assert from "node:assert/strict";
import { EchoService } from "../proto/gen/thoc/test/v1/echo_pb.js";
import { ThocError } from "../errors/index.js";
import { RpcServer, createClient, GrpcStatus, type ImplOf } from "./index.js";

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
