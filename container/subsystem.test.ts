/**
 * The container subsystem in an agent context (dev config, real LocalStore,
 * ContainerService on a real gRPC server): without an engine it says where it
 * looked and stays ready under container.enabled auto (degraded under on);
 * with one, create / exec (bidi, exit code) / logs follow / stats / delete
 * over gRPC, and container events on the agent's event sink.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Registry } from "prom-client";
import { loadConfig } from "../config/index.js";
import { createLogger, type AgentContext, type ClusterEventInput, type EventHub } from "../core/index.js";
import { MemoryEngine } from "../engine/index.js";
import { ContainerService, type ExecInput } from "../proto/index.js";
import { createClient, RpcServer } from "../rpc/index.js";
import { LocalStore } from "../store/index.js";
import { ContainerSubsystem } from "./subsystem.js";

async function agent(env: Record<string, string>, engine?: MemoryEngine) {
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-ctsub-"));
  const config = loadConfig({ dev: true, file: null, env, cwd: dir, flags: { "--data-dir": dir } });
  const store = await LocalStore.open(dir);
  const events: ClusterEventInput[] = [];
  const hub: EventHub = { publish: (e) => events.push(e), attachMembership() {} };
  const rpc = new RpcServer();
  const ctx: AgentContext = {
    config, store, log: createLogger("silent"), metrics: new Registry(), rpc, nodeId: store.nodeId, version: "test", events: hub,
    addresses: { grpc: "127.0.0.1:1", http: "127.0.0.1:2", s3: "127.0.0.1:3", gossip: "127.0.0.1:4" },
    capacity: () => ({ cpus: 2, cpuModel: "test", memoryBytes: 2 ** 31, memoryFreeBytes: 2 ** 30, diskBytes: 2 ** 34, diskFreeBytes: 2 ** 33, gpus: [] }),
  };
  const sub = new ContainerSubsystem(engine ? { openEngine: () => engine } : {});
  await sub.start(ctx);
  const port = await rpc.listen("127.0.0.1", 0);
  const client = createClient(ContainerService, `127.0.0.1:${port}`, { defaultTimeoutMs: 5000 });
  return {
    sub, client, events, ctx,
    async close() { client.close(); rpc.forceShutdown(); await sub.stop(); await store.close(); await rm(dir, { recursive: true, force: true }); },
  };
}

test("no engine at the configured URI: ready under auto with the reason, degraded under on; calls answer UNAVAILABLE naming the URI", async () => {
  const a = await agent({ THOC_CONTAINER_RUNTIME_URI: "unix:///nonexistent/podman.sock" });
  try {
    const h = a.sub.health();
    assert.equal(h.status, "up");
    assert.match(h.detail ?? "", /unix:\/\/\/nonexistent\/podman\.sock.*containers unavailable until an engine answers/);
    await assert.rejects(a.client.createContainer({ spec: { name: "web", image: "bb:1" } }), (e: { code: string; message: string }) => {
      assert.equal(e.code, "unavailable");
      assert.match(e.message, /unix:\/\/\/nonexistent\/podman\.sock/);
      return true;
    });
    const rt = await a.client.getContainerRuntime({});
    assert.equal(rt.available, false);
    assert.equal(rt.uri, "unix:///nonexistent/podman.sock");
    assert.match(rt.detail, /unix:\/\/\/nonexistent\/podman\.sock/);
    assert.deepEqual((await a.client.listContainers({})).containers, [], "records answer without an engine");
    await assert.rejects(a.client.getContainer({ name: "web" }), (e: { code: string }) => e.code === "not_found");
  } finally { await a.close(); }
  const on = await agent({ THOC_CONTAINER_RUNTIME_URI: "unix:///nonexistent/podman.sock", THOC_CONTAINER_ENABLED: "on" });
  try {
    assert.equal(on.sub.health().status, "degraded");
  } finally { await on.close(); }
  const off = await agent({ THOC_CONTAINER_ENABLED: "off" });
  try {
    assert.deepEqual(off.sub.health(), { status: "up", detail: "off (container.enabled: off)" });
    await assert.rejects(off.client.listContainers({}), (e: { code: string; message: string }) => e.code === "failed_precondition" && /container\.enabled: off/.test(e.message));
  } finally { await off.close(); }
});

test("over gRPC with an engine: create, exec with stdin and the exit code, logs --follow, stats, stop, delete; events published", async () => {
  const engine = new MemoryEngine();
  engine.addImage("localhost/bb:1");
  const a = await agent({ THOC_CONTAINER_RUNTIME_URI: "memory:" }, engine);
  try {
    assert.equal(a.sub.health().status, "up");
    assert.match(a.sub.health().detail ?? "", /^memory 1 at memory:/);
    const rt = await a.client.getContainerRuntime({});
    assert.equal(rt.available, true);
    assert.equal(rt.engine, "memory");
    const created = await a.client.createContainer({
      spec: { name: "web", image: "bb:1", env: { GREETING: "hello" }, command: ["sh", "-c", "echo $GREETING; sleep 0.05; echo later; sleep inf"], registryAuth: { username: "u", password: "never-shown" } },
    });
    assert.equal(created.container?.status, "running");
    assert.equal(created.container?.nodeId, a.ctx.nodeId);
    assert.equal(created.container?.spec?.registryAuth?.password, "");
    assert.equal(created.container?.registryAuthSet, true);
    await assert.rejects(a.client.createContainer({ spec: { name: "Bad", image: "bb:1" } }), (e: { code: string; message: string }) => e.code === "invalid_argument" && /name: "Bad"/.test(e.message));
    await assert.rejects(a.client.createContainer({ spec: { name: "w2", image: "bb:1" }, node: "elsewhere" }), (e: { code: string }) => e.code === "failed_precondition");

    // Exec: stdin in, output back, the exit code on the last message.
    async function* input(): AsyncIterable<Partial<ExecInput>> {
      yield { start: { name: "web", command: ["sh", "-c", "cat; exit 7"], stdin: true, tty: false, env: {}, workdir: "", rows: 0, cols: 0 } as ExecInput["start"] };
      yield { stdin: Buffer.from("ping\n") };
      yield { stdinEof: true };
    }
    let out = "", exit: number | undefined;
    for await (const o of a.client.exec(input() as AsyncIterable<ExecInput>)) {
      if (o.exited) exit = o.exitCode; else out += Buffer.from(o.data).toString();
    }
    assert.equal(out, "ping\n");
    assert.equal(exit, 7);
    // Exec into a stopped container: a clear refusal.
    async function* one(name: string): AsyncIterable<Partial<ExecInput>> { yield { start: { name, command: ["true"] } as ExecInput["start"] }; }

    const ac = new AbortController();
    const lines: string[] = [];
    for await (const c of a.client.containerLogs({ name: "web", follow: true }, { signal: ac.signal })) {
      lines.push(Buffer.from(c.data).toString().trim());
      if (lines.length === 2) break;
    }
    assert.deepEqual(lines, ["hello", "later"]);

    const running = await a.ctx.metrics.metrics();
    assert.match(running, /thoc_container_memory_bytes\{container="web"\} 4194304/);
    assert.match(running, /thoc_container_cpu_seconds_total\{container="web"\} \d/);
    assert.match(running, /thoc_containers_by_status\{status="running"\} 1/);
    // Counters end in _total (promtool check metrics, which CI runs on /metrics, insists).
    for (const [, name] of running.matchAll(/^# TYPE (thoc_container\S*) counter$/gm)) assert.match(name!, /_total$/);
    const st = await a.client.containerStats({ name: "web" });
    assert.equal(st.name, "web");
    assert.ok(st.memoryBytes > 0n);
    const stopped = await a.client.stopContainer({ name: "web", timeoutMs: 10 });
    assert.equal(stopped.container?.status, "stopped");
    await assert.rejects((async () => { for await (const _ of a.client.exec(one("web") as AsyncIterable<ExecInput>)) { /* none */ } })(),
      (e: { code: string; message: string }) => e.code === "failed_precondition" && /web is stopped: start it first/.test(e.message));
    assert.equal((await a.client.startContainer({ name: "web" })).container?.status, "running");
    assert.deepEqual(await a.client.deleteContainer({ name: "web" }).then((r) => r.volumesRemoved), []);
    assert.deepEqual((await a.client.listContainers({})).containers, []);
    await assert.rejects(a.client.importContainerImage((async function* () { /* nothing */ })()), (e: { code: string }) => e.code === "unimplemented");

    const ev = a.events.filter((e) => e.kind === "container").map((e) => (e.kind === "container" ? `${e.action}:${e.by}` : ""));
    assert.deepEqual(ev, ["created:user", "running:user", "stopped:user", "running:user", "deleted:user"]);
  } finally { await a.close(); }
});
