/**
 * What follows the engine after a create, on a FakeClock (no test waits out
 * a back-off or a health interval): the restart policy and its back-off,
 * health checks over real HTTP turning a container unhealthy and back,
 * reconciliation after an agent restart, and an engine that goes away.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeClock } from "../core/index.js";
import { MemoryEngine } from "../engine/index.js";
import { httpProbe } from "./health.js";
import { backoffMs } from "./restart.js";
import { fixture, spec, until, type Fixture } from "./testutil.js";
import type { ContainerRecord } from "./types.js";

const rec = (f: Fixture, name: string) => f.m.get(name);
const status = (f: Fixture, name: string, want: ContainerRecord["status"]) =>
  until(async () => (await rec(f, name)).status === want, `${name} to be ${want}`);

async function withClock(fn: (f: Fixture, clock: FakeClock) => Promise<void>, o: { probe?: typeof httpProbe } = {}): Promise<void> {
  const clock = new FakeClock(Date.now());
  const f = await fixture({ clock, ...(o.probe ? { probe: o.probe } : {}) }, new MemoryEngine({ http: true, clock }));
  try { await fn(f, clock); } finally { await f.cleanup(); }
}

test("back-off: 1 s doubling to 60 s", () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7, 20].map((n) => backoffMs(n)), [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]);
});

test("on-failure: a container that exits non-zero is started again after 1 s, 2 s, 4 s...; restartCount counts; a user stop ends it", () => withClock(async (f, clock) => {
  f.changes.length = 0;
  await f.m.create(spec({ name: "crashy", command: ["sh", "-c", "echo boom; exit 3"] }));
  await status(f, "crashy", "restarting");
  let r = await rec(f, "crashy");
  assert.equal(r.exitCode, 3);
  assert.match(r.detail, /exited with code 3; restart policy on-failure: starting it again in 1 s/);
  await clock.advance(999);
  assert.equal((await rec(f, "crashy")).restartCount, 0, "not before the back-off");
  await clock.advance(1);
  await until(async () => (await rec(f, "crashy")).restartCount === 1 && (await rec(f, "crashy")).status === "restarting", "first restart");
  assert.match((await rec(f, "crashy")).detail, /again in 2 s/);
  await clock.advance(2000);
  await until(async () => (await rec(f, "crashy")).restartCount === 2 && (await rec(f, "crashy")).status === "restarting", "second restart");
  assert.match((await rec(f, "crashy")).detail, /again in 4 s/);
  const by = new Set(f.changes.filter((c) => c.now?.status === "restarting").map((c) => c.by));
  assert.deepEqual([...by], ["restart-policy"]);
  // A user's stop cancels the pending restart.
  r = await f.m.stop("crashy");
  assert.equal(r.status, "stopped");
  await clock.advance(10_000);
  assert.equal((await rec(f, "crashy")).status, "stopped");
  assert.equal((await rec(f, "crashy")).restartCount, 2);
}));

test("policies: no and on-failure leave a clean or unwanted exit exited; always restarts even exit 0", () => withClock(async (f, clock) => {
  await f.m.create(spec({ name: "once", command: ["sh", "-c", "exit 0"] }));
  await f.m.create(spec({ name: "never", restartPolicy: "no", command: ["sh", "-c", "exit 1"] }));
  await f.m.create(spec({ name: "loop", restartPolicy: "always", command: ["sh", "-c", "exit 0"] }));
  await status(f, "once", "exited");
  await status(f, "never", "exited");
  await status(f, "loop", "restarting");
  await clock.advance(1000);
  await until(async () => (await rec(f, "loop")).restartCount === 1, "always restarted");
  assert.equal((await rec(f, "once")).restartCount, 0);
  assert.equal((await rec(f, "never")).exitCode, 1);
}));

test("a crash after a long run starts the back-off over; a crash right after a restart doubles it", () => withClock(async (f, clock) => {
  await f.m.create(spec({ name: "svc" }));
  await f.engine.crash("thoc-svc", 137);
  await status(f, "svc", "restarting");
  assert.match((await rec(f, "svc")).detail, /code 137.*in 1 s/);
  await clock.advance(1000);
  await status(f, "svc", "running");
  await f.engine.crash("thoc-svc", 137);
  await until(async () => /in 2 s/.test((await rec(f, "svc")).detail), "doubled");
  await clock.advance(2000);
  await status(f, "svc", "running");
  await clock.advance(15_000);
  await f.engine.crash("thoc-svc", 1);
  await until(async () => /in 1 s/.test((await rec(f, "svc")).detail), "reset after a 15 s run");
}));

test("health: healthy after a passing check, unhealthy after 3 failures in a row (an event), running again on success", () => {
  let probes = 0;
  const probe = async (url: string, t: number) => { const r = await httpProbe(url, t); probes++; return r; };
  return withClock(async (f, clock) => {
    const r = await f.m.create(spec({ name: "hc", ports: [{ containerPort: 80, hostPort: 0 }], healthCheckPath: "/healthz" }));
    assert.equal(r.health, "starting");
    const tick = async () => { const n = probes; await clock.advance(5000); await until(() => probes > n, "a probe"); };
    await tick();
    await until(async () => (await rec(f, "hc")).health === "healthy", "healthy");
    f.engine.setHttpStatus("thoc-hc", "/healthz", 500);
    f.changes.length = 0;
    await tick();
    await tick();
    assert.equal((await rec(f, "hc")).status, "running", "two failures are not three");
    await tick();
    await status(f, "hc", "unhealthy");
    const u = await rec(f, "hc");
    assert.equal(u.health, "unhealthy");
    assert.match(u.detail, /answered 500 \(3 checks in a row\)/);
    assert.deepEqual(f.changes.map((c) => `${c.now?.status}:${c.by}`), ["unhealthy:health"]);
    f.engine.setHttpStatus("thoc-hc", "/healthz", 200);
    await tick();
    await status(f, "hc", "running");
    assert.equal((await rec(f, "hc")).health, "healthy");
    // A stopped container is not checked.
    await f.m.stop("hc");
    const n = probes;
    await clock.advance(20_000);
    await new Promise((res) => setTimeout(res, 30));
    assert.equal(probes, n);
    assert.equal((await rec(f, "hc")).health, "");
  }, { probe });
});

test("reconcile after an agent restart: status caught up, a vanished container marked, an orphan adopted, a container that died meanwhile restarted", () => withClock(async (f, clock) => {
  await f.m.create(spec({ name: "keep" }));
  await f.m.create(spec({ name: "gone" }));
  await f.m.create(spec({ name: "died" }));
  await f.m.create(spec({ name: "orphan", env: { A: "1" } }));
  f.m.close();
  // While the agent is away: one container is removed behind its back, one crashes, one loses its record.
  await f.engine.remove("thoc-gone", { force: true });
  await f.engine.crash("thoc-died", 2);
  await f.store.json("container").del("orphan");
  const m = await f.reopen();
  assert.equal((await m.get("keep")).status, "running");
  const gone = await m.get("gone");
  assert.equal(gone.status, "error");
  assert.match(gone.detail, /the engine container is gone: delete the container \(thoc-node ct delete gone\)/);
  await assert.rejects(m.start("gone"), /has no engine container/);
  assert.deepEqual(await m.delete("gone"), []);
  const orphan = await m.get("orphan");
  assert.equal(orphan.status, "running");
  assert.equal(orphan.spec.env.A, "1");
  assert.match(orphan.detail, /adopted/);
  await status(f, "died", "restarting");
  await clock.advance(1000);
  await status(f, "died", "running");
  assert.equal((await m.get("died")).restartCount, 1);
  // Containers of another agent on the same engine are not this node's.
  await f.engine.create({ name: "thoc-other", image: "localhost/bb:1", env: {}, labels: { "thoc.managed": "1", "thoc.node-id": "node-2", "thoc.spec": JSON.stringify(spec({ name: "other" })) }, ports: [], mounts: [], cpus: 0, memoryBytes: 0, devices: [] });
  assert.deepEqual(await m.reconcile(), { adopted: [], missing: [] });
  // Removed outside thoc-node while the agent watches.
  await f.engine.remove("thoc-keep", { force: true });
  await status(f, "keep", "error");
  assert.match((await m.get("keep")).detail, /removed outside thoc-node/);
}));

test("an engine that goes away: calls answer unavailable, the state says why; when it is back the manager reconnects and catches up", () => withClock(async (f, clock) => {
  await f.m.create(spec({ name: "w" }));
  assert.equal(f.m.engineState().up, true);
  f.engine.setAvailable(false);
  await until(() => !f.m.engineState().up, "down");
  assert.match(f.m.engineState().detail, /^no container engine at memory:: connection refused/);
  await assert.rejects(f.m.create(spec({ name: "w2" })), (e: { code?: string; message: string }) => e.code === "unavailable" && /no container engine at memory:/.test(e.message));
  assert.equal(await f.store.json("container").get("w2"), undefined);
  assert.equal((await f.m.get("w")).status, "running", "records still answer");
  // It dies while nobody hears it.
  f.engine.setAvailable(true);
  await f.engine.crash("thoc-w", 9);
  await clock.advance(1000);
  await until(() => f.m.engineState().up, "up again");
  await status(f, "w", "restarting");
  await clock.advance(1000);
  await status(f, "w", "running");
}));
