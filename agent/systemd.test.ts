import { test } from "node:test";
import assert from "node:assert/strict";
import { createLogger, FakeClock, type SubsystemHealth } from "../core/index.js";
import { MemoryNotifier } from "./sd-notify.js";
import { notifyEnv, statusLine, Systemd } from "./systemd.js";

const log = createLogger("silent");

function setup(watchdogUsec?: number) {
  const clock = new FakeClock();
  const notifier = new MemoryNotifier();
  const sd = new Systemd({ notifier, log, clock, pollMs: { starting: 100, serving: 1000 }, ...(watchdogUsec ? { watchdogUsec } : {}) });
  let health: { ready: boolean; subsystems: Record<string, SubsystemHealth> } = {
    ready: false,
    subsystems: { store: { status: "up" }, membership: { status: "up", detail: "2 alive" }, objectstore: { status: "starting", detail: "joining" } },
  };
  const setReady = (ready: boolean) => {
    health = { ready, subsystems: { ...health.subsystems, objectstore: { status: ready ? "up" : "starting", detail: ready ? "ring 2 nodes" : "joining" } } };
  };
  return { clock, notifier, sd, health: () => health, setReady };
}

test("notifyEnv: reads NOTIFY_SOCKET and the watchdog meant for this pid, and removes all three from the environment", () => {
  const e1: NodeJS.ProcessEnv = { PATH: "/bin" };
  assert.equal(notifyEnv(e1, 42), undefined);
  const e2: NodeJS.ProcessEnv = { NOTIFY_SOCKET: "/run/systemd/notify", WATCHDOG_USEC: "30000000", WATCHDOG_PID: "42", PATH: "/bin" };
  assert.deepEqual(notifyEnv(e2, 42), { socket: "/run/systemd/notify", watchdogUsec: 30_000_000 });
  assert.deepEqual(e2, { PATH: "/bin" }, "children do not inherit systemd's variables");
  assert.deepEqual(notifyEnv({ NOTIFY_SOCKET: "@n", WATCHDOG_USEC: "1000000" }, 42), { socket: "@n", watchdogUsec: 1_000_000 }, "no WATCHDOG_PID: ours");
  assert.deepEqual(notifyEnv({ NOTIFY_SOCKET: "@n", WATCHDOG_USEC: "1000000", WATCHDOG_PID: "7" }, 42), { socket: "@n" }, "another process's watchdog");
  assert.deepEqual(notifyEnv({ NOTIFY_SOCKET: "@n", WATCHDOG_USEC: "soon" }, 42), { socket: "@n" });
  assert.deepEqual(notifyEnv({ NOTIFY_SOCKET: "@n", WATCHDOG_USEC: "0" }, 42), { socket: "@n" });
  const e3: NodeJS.ProcessEnv = { WATCHDOG_USEC: "1", WATCHDOG_PID: "1" };
  assert.equal(notifyEnv(e3, 1), undefined);
  assert.deepEqual(e3, {}, "removed even without a socket");
});

test("keep-alives every half WATCHDOG_USEC; before READY each also extends the start timeout by one period", async () => {
  const { clock, notifier, sd, health, setReady } = setup(1_000_000);
  assert.equal(sd.watchdogMs, 500);
  sd.startWatchdog();
  sd.startWatchdog();
  await clock.advance(1200);
  assert.deepEqual(notifier.sent, Array(3).fill("WATCHDOG=1\nEXTEND_TIMEOUT_USEC=1000000"), "at 0, 500 and 1000 ms");
  setReady(true);
  sd.watch(health);
  notifier.sent.length = 0;
  await clock.advance(1000);
  assert.deepEqual(notifier.sent.filter((m) => m.startsWith("WATCHDOG")), ["WATCHDOG=1", "WATCHDOG=1"], "after READY: keep-alives only");
  sd.close();
  notifier.closed = false;
  notifier.sent.length = 0;
  await clock.advance(5000);
  assert.deepEqual(notifier.sent, []);
});

test("no watchdog: no keep-alives and no start-timeout extensions", async () => {
  const { clock, notifier, sd } = setup();
  assert.equal(sd.watchdogMs, undefined);
  sd.startWatchdog();
  await clock.advance(10_000);
  assert.deepEqual(notifier.sent, []);
});

test("READY=1 only once health is ready, with the serving status; status lines before and after, each sent once", async () => {
  const { clock, notifier, sd, health, setReady } = setup();
  sd.progress("thoc-node 1.0");
  sd.progress("store opened");
  sd.progress("store opened");
  sd.watch(health);
  await clock.advance(1000);
  assert.deepEqual(notifier.sent, [
    "STATUS=starting: thoc-node 1.0",
    "STATUS=starting: store opened",
    "STATUS=not ready: objectstore starting (joining)",
  ]);
  setReady(true);
  await clock.advance(100);
  assert.deepEqual(notifier.sent.slice(3), ["READY=1\nSTATUS=serving (membership: 2 alive; objectstore: ring 2 nodes)"]);
  sd.progress("late step");
  setReady(false);
  await clock.advance(999);
  assert.equal(notifier.sent.length, 4, "after READY the status is looked at less often");
  await clock.advance(1);
  assert.deepEqual(notifier.sent.slice(4), ["STATUS=not ready: objectstore starting (joining)"], "no second READY, no starting: line");
  setReady(true);
  await clock.advance(1000);
  assert.deepEqual(notifier.sent.slice(5), ["STATUS=serving (membership: 2 alive; objectstore: ring 2 nodes)"]);
});

test("STOPPING=1 with a status at shutdown, then nothing but keep-alives; failed() says why", async () => {
  const { clock, notifier, sd, health } = setup(1_000_000);
  sd.startWatchdog();
  sd.watch(health);
  sd.stopping("SIGTERM: leaving");
  sd.stopping("SIGINT");
  notifier.sent.length = 0;
  await clock.advance(1000);
  assert.deepEqual(notifier.sent, ["WATCHDOG=1", "WATCHDOG=1"], "no extension of the stop timeout, no readiness");
  const f = setup();
  f.sd.failed("port 7400 in use\n(by x)");
  f.sd.watch(f.health);
  await f.clock.advance(1000);
  assert.deepEqual(f.notifier.sent, ["STATUS=failed to start: port 7400 in use (by x)"]);
  const s = setup();
  s.sd.stopping("SIGTERM: leaving");
  assert.deepEqual(s.notifier.sent, ["STOPPING=1\nSTATUS=stopping: SIGTERM: leaving"]);
});

test("a full queue: messages wait and go in order; keep-alives are dropped, not queued", async () => {
  const { clock, notifier, sd, health, setReady } = setup(1_000_000);
  notifier.full = true;
  sd.startWatchdog();
  sd.progress("a");
  sd.progress("b");
  setReady(true);
  sd.watch(health);
  await clock.advance(450);
  assert.deepEqual(notifier.sent, []);
  notifier.full = false;
  await clock.advance(200);
  // A keep-alive may overtake them (harmless: it carries no state); the rest keep their order.
  assert.deepEqual(notifier.sent.filter((m) => m !== "WATCHDOG=1"), ["STATUS=starting: a", "STATUS=starting: b", "READY=1\nSTATUS=serving (membership: 2 alive; objectstore: ring 2 nodes)"]);
  sd.stopping("x");
  assert.equal(notifier.sent.at(-1), "STOPPING=1\nSTATUS=stopping: x", "sent at once when nothing waits");
});

test("statusLine: what systemctl status shows", () => {
  assert.equal(statusLine({ ready: true, subsystems: { store: { status: "up" }, grpc: { status: "up" } } }), "serving");
  assert.equal(statusLine({ ready: false, subsystems: { store: { status: "up" }, vm: { status: "degraded", detail: "hypervisor qemu:///system unreachable" }, grpc: { status: "starting" } } }),
    "not ready: vm degraded (hypervisor qemu:///system unreachable); grpc starting");
});
