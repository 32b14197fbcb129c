/**
 * Issue 17's systemd readiness and watchdog, without systemd as PID 1: real
 * agents get a NOTIFY_SOCKET of a datagram socket this test owns (as systemd
 * gives a Type=notify service), and the test reads what systemd would:
 *  - a dev agent joining a seed that is not up yet: STATUS lines as it starts,
 *    no READY=1 while /readyz says 503, WATCHDOG=1 at half of WATCHDOG_USEC
 *    extending the start timeout meanwhile; the seed comes up and READY=1
 *    follows /readyz's 200; keep-alives stop while the event loop is blocked
 *    (a test-only preload blocks it on SIGUSR2) and come back after; SIGTERM
 *    sends STOPPING=1 before the exit;
 *  - a production-mode agent (config file, cluster key, cluster PKI) on an
 *    abstract socket, with a WATCHDOG_PID that is not its own: READY=1 when
 *    ready, no keep-alives, STOPPING=1 on SIGTERM.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { AgentProcess, REPO_ROOT, loopbackBlock, sleep } from "./harness.js";
import { NotifySocket, type Datagram } from "./notify-socket.js";

const root = await mkdtemp(path.join(tmpdir(), "thoc-notify-test-"));
const block = loopbackBlock();
const agents: AgentProcess[] = [];
const sockets: NotifySocket[] = [];
after(async () => {
  await Promise.all(agents.map((a) => a.kill("SIGKILL")));
  for (const s of sockets) s.close();
  await rm(root, { recursive: true, force: true });
});

const BLOCK_LOOP = pathToFileURL(path.join(REPO_ROOT, "dist", "test", "block-loop.js")).href;
const BLOCK_MS = 3000;

async function readyz(a: AgentProcess): Promise<number> {
  try {
    return (await fetch(`${a.httpUrl}/readyz`, { signal: AbortSignal.timeout(2000) })).status;
  } catch {
    return 0;
  }
}

const statuses = (s: NotifySocket) => s.received.filter((d) => "STATUS" in d.fields).map((d) => d.fields.STATUS!);
const keepAlives = (s: NotifySocket, from = 0, to = Infinity) => s.with("WATCHDOG").filter((d) => d.at >= from && d.at <= to);
const gaps = (ds: Datagram[]) => ds.slice(1).map((d, i) => d.at - ds[i]!.at);

/** The datagrams as received, ms after the first; runs of keep-alives as one line (for the test's output). */
function transcript(s: NotifySocket): string {
  const out: string[] = [];
  const t0 = s.received[0]?.at ?? 0;
  let run: Datagram[] = [];
  const flush = () => {
    if (!run.length) return;
    const g = gaps(run);
    out.push(`+${run[0]!.at - t0} ms  ${run[0]!.text.replace(/\n/g, " | ")}${run.length > 1 ? `  x${run.length}, every ${Math.min(...g)}-${Math.max(...g)} ms` : ""}`);
    run = [];
  };
  for (const d of s.received) {
    if (run.length && d.text !== run[0]!.text) flush();
    if (d.fields.WATCHDOG) run.push(d);
    else {
      flush();
      out.push(`+${d.at - t0} ms  ${d.text.replace(/\n/g, " | ")}`);
    }
  }
  flush();
  return out.join("\n");
}

/** Each expected prefix matches a later line than the one before (other lines may come between). */
function assertInOrder(lines: string[], prefixes: string[]): void {
  let i = 0;
  for (const p of prefixes) {
    while (i < lines.length && !lines[i]!.startsWith(p)) i++;
    assert.ok(i < lines.length, `status line starting "${p}" (in this order) in:\n${lines.join("\n")}`);
    i++;
  }
}

test("dev agent: STATUS as it starts, READY=1 only when /readyz is 200, keep-alives from the event loop, STOPPING=1 on SIGTERM", async () => {
  const sock = NotifySocket.open("path");
  sockets.push(sock);
  const seed = new AgentProcess("seed", `${block}.2`, path.join(root, "seed"), { dev: true });
  const a = new AgentProcess("joiner", `${block}.3`, path.join(root, "joiner"), {
    dev: true,
    join: [seed.gossipAddress],
    env: { NOTIFY_SOCKET: sock.address, WATCHDOG_USEC: "1000000", NODE_OPTIONS: `--import=${BLOCK_LOOP}`, THOC_TEST_BLOCK_MS: String(BLOCK_MS) },
  });
  agents.push(seed, a);
  await a.launch();

  // Started, but its seed is not up: not ready, and systemd is not told otherwise.
  await sock.next((d) => d.fields.STATUS?.startsWith("not ready:") ?? false);
  for (let i = 0; i < 4; i++) {
    assert.equal(await readyz(a), 503);
    await sleep(500);
  }
  assert.deepEqual(sock.with("READY"), [], "no READY=1 while /readyz says 503");
  const early = keepAlives(sock);
  assert.ok(early.length >= 3, `keep-alives while starting: ${early.length}`);
  for (const d of early) assert.equal(d.fields.EXTEND_TIMEOUT_USEC, "1000000", "each extends the start timeout by one watchdog period");

  await seed.start();
  const ready = await sock.next((d) => "READY" in d.fields);
  assert.equal(await readyz(a), 200, "/readyz is 200 when READY=1 arrives");
  assert.equal(ready.fields.READY, "1");
  assert.match(ready.fields.STATUS ?? "", /^serving \(membership: \d+ alive/, "READY=1 comes with the serving status");

  // Keep-alives at about half of WATCHDOG_USEC, plain once ready. The test's own timer slipping (a machine so
  // loaded that this process too stood still for seconds) excuses a late keep-alive; nothing else does.
  const t3 = Date.now();
  await sleep(3000);
  const ownSlip = Date.now() - t3 - 3000;
  const steady = keepAlives(sock, ready.at + 600);
  assert.ok(steady.length >= 4, `keep-alives after READY: ${steady.length}`);
  for (const d of steady) assert.deepEqual(d.fields, { WATCHDOG: "1" });
  // About the asked interval; a busy 2-core test machine may delay one now and then, not the typical one.
  const sorted = gaps(steady).sort((x, y) => x - y);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  assert.ok(median >= 400 && median <= 650, `median keep-alive interval ${median} ms (asked 500): ${sorted.join(", ")}`);
  assert.ok(sorted.at(-1)! < 1000 + Math.max(0, ownSlip), `no interval reaches WATCHDOG_USEC: ${sorted.join(", ")} (this test's own 3 s sleep took ${ownSlip} ms longer)`);

  // A blocked event loop: no keep-alive for longer than WATCHDOG_USEC (systemd would kill it), then they resume.
  const blockedAt = Date.now();
  a.proc!.kill("SIGUSR2");
  await sleep(BLOCK_MS + 1500);
  const around = keepAlives(sock, blockedAt - 1000);
  const longest = Math.max(...gaps(around));
  assert.ok(longest >= BLOCK_MS - 500, `keep-alives paused while the loop was blocked: longest gap ${longest} ms, intervals ${gaps(around).join(", ")}`);
  assert.ok(keepAlives(sock, blockedAt + BLOCK_MS).length >= 1, "keep-alives resume after the block");
  assert.ok(a.running, "still running: only systemd kills a hung agent");

  const sentBefore = sock.received.length;
  const termAt = Date.now();
  a.proc!.kill("SIGTERM");
  const code = await a.waitExit();
  assert.equal(code, 0, a.output.slice(-2000));
  await sleep(100);
  const stopping = sock.with("STOPPING");
  assert.equal(stopping.length, 1);
  assert.equal(stopping[0]!.fields.STOPPING, "1");
  assert.match(stopping[0]!.fields.STATUS ?? "", /^stopping: SIGTERM/);
  assert.ok(stopping[0]!.at - termAt < 1000, "sent as shutdown begins");
  const after = sock.received.slice(sentBefore).filter((d) => !("WATCHDOG" in d.fields));
  assert.deepEqual(after.map((d) => d.text), [stopping[0]!.text], "nothing but keep-alives after STOPPING=1");

  console.log(transcript(sock));
  const lines = statuses(sock);
  assertInOrder(lines, [
    "starting: thoc-node ", "starting: vm: checking the host", "starting: store opened (node ", "starting: membership up (", "starting: objectstore starting (",
    "starting: vm up (test:///default)", "starting: scheduler up (", `starting: gRPC serving on ${a.grpcAddress}`,
    "not ready: objectstore starting (joining", "serving (membership: ", "stopping: SIGTERM",
  ]);
  assert.equal(sock.with("READY").length, 1, "READY=1 once");
});

test("production agent on an abstract socket: READY=1 when ready, no keep-alives for another WATCHDOG_PID, STOPPING=1 on SIGTERM", async () => {
  const sock = NotifySocket.open("abstract");
  sockets.push(sock);
  assert.ok(sock.address.startsWith("@"));
  const a = new AgentProcess("prod", `${block}.4`, path.join(root, "prod"), {
    dev: false,
    env: { NOTIFY_SOCKET: sock.address, WATCHDOG_USEC: "1000000", WATCHDOG_PID: String(process.pid) },
  });
  agents.push(a);
  await a.launch();
  const ready = await sock.next((d) => "READY" in d.fields);
  assert.equal(await readyz(a), 200, "/readyz is 200 when READY=1 arrives");
  assert.match(ready.fields.STATUS ?? "", /^serving \(membership: 1 alive/);
  await sleep(1500);
  assert.deepEqual(sock.with("WATCHDOG"), [], "WATCHDOG_PID names another process: no keep-alives");
  assert.deepEqual(sock.with("EXTEND_TIMEOUT_USEC"), [], "and no start-timeout extension without a watchdog");
  a.proc!.kill("SIGTERM");
  assert.equal(await a.waitExit(), 0, a.output.slice(-2000));
  await sleep(100);
  console.log(transcript(sock));
  const lines = statuses(sock);
  assertInOrder(lines, ["starting: thoc-node ", "starting: store opened", "starting: membership up", "starting: objectstore up", `starting: gRPC serving on ${a.grpcAddress}`, "serving (", "stopping: SIGTERM"]);
  assert.equal(sock.with("STOPPING").length, 1);
});
