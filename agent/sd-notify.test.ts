import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeNotify, encodeNotify, notifyAddress, openNotifier } from "./sd-notify.js";
import { NotifySocket } from "../test/notify-socket.js";

test("encodeNotify: assignments in order, one line each, long values shortened", () => {
  assert.equal(encodeNotify({ READY: 1, STATUS: "serving" }), "READY=1\nSTATUS=serving");
  // A newline in a value (an error message) must not become an assignment of its own.
  const evil = encodeNotify({ STATUS: "bad\nREADY=1\r\nx" });
  assert.equal(evil, "STATUS=bad READY=1 x");
  assert.deepEqual(decodeNotify(evil), { STATUS: "bad READY=1 x" });
  const long = encodeNotify({ STATUS: "x".repeat(5000) });
  assert.equal(long.length, "STATUS=".length + 1000);
  assert.ok(long.endsWith("…"));
  assert.throws(() => encodeNotify({ "READY=1\nX": 1 }), /bad variable name/);
  assert.throws(() => encodeNotify({ status: 1 }), /bad variable name/);
  assert.deepEqual(decodeNotify("WATCHDOG=1\nEXTEND_TIMEOUT_USEC=30000000"), { WATCHDOG: "1", EXTEND_TIMEOUT_USEC: "30000000" });
});

test("notifyAddress: a path is family + path + NUL; '@name' is family + NUL + name, with no NUL after", () => {
  assert.deepEqual([...notifyAddress("/run/systemd/notify")], [1, 0, ...Buffer.from("/run/systemd/notify"), 0]);
  assert.deepEqual([...notifyAddress("@sd/notify")], [1, 0, 0, ...Buffer.from("sd/notify")]);
  // sun_path is 108 bytes: a path of 107 (+ NUL) fits, 108 does not; an abstract name of 107 (+ leading NUL) fits.
  assert.equal(notifyAddress("/" + "a".repeat(106)).length, 2 + 108);
  assert.throws(() => notifyAddress("/" + "a".repeat(107)), /not a usable/);
  assert.equal(notifyAddress("@" + "a".repeat(107)).length, 2 + 108);
  assert.throws(() => notifyAddress("@" + "a".repeat(108)), /not a usable/);
  assert.throws(() => notifyAddress("@"), /not a usable/);
  assert.throws(() => notifyAddress("/a\0b"), /not a usable/);
  assert.throws(() => notifyAddress("vsock:2:1234"), /vsock is not supported/);
  assert.throws(() => notifyAddress("run/notify"), /not a unix socket path/);
});

test("openNotifier: datagrams reach a path socket and an abstract one byte for byte", async (t) => {
  for (const kind of ["path", "abstract"] as const) {
    const sock = NotifySocket.open(kind);
    t.after(() => sock.close());
    const n = openNotifier(sock.address);
    t.after(() => n.close());
    assert.equal(n.send("STATUS=héllo\nREADY=1"), true);
    assert.equal(n.send("WATCHDOG=1"), true);
    await sock.next((d) => d.text === "WATCHDOG=1", 5000);
    assert.deepEqual(sock.received.map((d) => d.text), ["STATUS=héllo\nREADY=1", "WATCHDOG=1"], kind);
  }
});

test("openNotifier: never blocks: a full queue or a missing socket is a false send, at once", async (t) => {
  const sock = NotifySocket.open("path");
  t.after(() => sock.close());
  sock.paused = true;
  const n = openNotifier(sock.address);
  t.after(() => n.close());
  // The kernel queues a few datagrams per unix socket (net.unix.max_dgram_qlen, 10 by default); a blocking send would hang here.
  const results: boolean[] = [];
  const t0 = Date.now();
  for (let i = 0; i < 2000 && !results.includes(false); i++) results.push(n.send(`WATCHDOG=1`));
  assert.ok(results.includes(false), "some send refused while nobody reads");
  assert.ok(Date.now() - t0 < 1000, "sends did not wait for room");
  sock.paused = false;
  await sock.next(() => true, 5000);
  assert.equal(openNotifier("/nonexistent/notify.sock").send("READY=1"), false);
  const closed = openNotifier(sock.address);
  closed.close();
  assert.equal(closed.send("READY=1"), false);
});
