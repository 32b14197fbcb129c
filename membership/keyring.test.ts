import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { ThocError } from "../errors/index.js";
import { Keyring, ReplayGuard, SeqSource } from "./keyring.js";
import { remaining, Suspicion, suspicionTimeouts } from "./suspicion.js";
import { FakeClock } from "../core/index.js";

const K1 = randomBytes(32).toString("base64");
const K2 = randomBytes(32).toString("base64");

test("seal/open round trip carries sender and sequence; tampering, wrong key, wrong cluster or kind fail", () => {
  const a = new Keyring([K1], "c1");
  const sealed = a.seal("p", "node-a", 42, Buffer.from("hello"));
  const o = a.open("p", sealed);
  assert.ok(o.ok);
  assert.equal(o.from, "node-a");
  assert.equal(o.seq, 42);
  assert.equal(o.body.toString(), "hello");
  const flipped = Buffer.from(sealed); flipped[20]! ^= 1;
  assert.deepEqual(a.open("p", flipped), { ok: false, reason: "auth" });
  assert.deepEqual(new Keyring([K2], "c1").open("p", sealed), { ok: false, reason: "auth" });
  assert.deepEqual(new Keyring([K1], "c2").open("p", sealed), { ok: false, reason: "auth" }, "cluster name is authenticated");
  assert.deepEqual(a.open("s", sealed), { ok: false, reason: "auth" }, "a datagram cannot pass as a stream frame");
  assert.deepEqual(a.open("p", sealed.subarray(0, 10)), { ok: false, reason: "malformed" });
  const v2 = Buffer.from(sealed); v2[0] = 2;
  assert.deepEqual(a.open("p", v2), { ok: false, reason: "version" });
});

test("key ring rotation: install, use, remove; old and new keys both open during the switch", () => {
  const a = new Keyring([K1], "c"), b = new Keyring([K1], "c");
  b.install(K2);
  assert.ok(b.open("p", a.seal("p", "a", 1, Buffer.from("x"))).ok, "b opens the old key");
  b.use(K2);
  assert.ok(!a.open("p", b.seal("p", "b", 1, Buffer.from("x"))).ok, "a without K2 cannot open b's new datagrams");
  a.install(K2);
  assert.ok(a.open("p", b.seal("p", "b", 2, Buffer.from("x"))).ok);
  assert.throws(() => b.remove(K2), (e: ThocError) => e.code === "failed_precondition");
  b.remove(K1);
  assert.equal(b.size, 1);
  assert.ok(!b.open("p", new Keyring([K1], "c").seal("p", "a", 3, Buffer.from("x"))).ok, "removed key no longer opens");
  assert.throws(() => new Keyring(["short"], "c"), /32 bytes/);
  assert.throws(() => new Keyring([], "c"), /no cluster key/);
  assert.throws(() => a.use(randomBytes(32).toString("base64")), /not installed/);
});

test("replay guard: duplicates and too-old sequence numbers are refused, reordering within the window is fine", () => {
  const g = new ReplayGuard(30_000_000, 600_000);
  const now = 1_700_000_000_000;
  const us = now * 1000;
  assert.equal(g.check("a", us, now), "ok");
  assert.equal(g.check("a", us, now), "replay");
  assert.equal(g.check("a", us + 5000, now), "ok");
  assert.equal(g.check("a", us + 2000, now), "ok", "out of order but inside the window");
  assert.equal(g.check("a", us + 2000, now), "replay");
  assert.equal(g.check("a", us + 40_000_000, now), "ok");
  assert.equal(g.check("a", us + 5_000_000, now), "replay", "older than the window");
  assert.equal(g.check("b", (now - 700_000) * 1000, now), "stale", "first contact with a message 11 min old");
  const s = new SeqSource(() => now);
  const x = s.next(), y = s.next();
  assert.ok(y > x && x >= us);
});

test("suspicion: fires at max with no confirmations, shrinks to min with k confirmations, never below min", async () => {
  const { min, max } = suspicionTimeouts(50, 1000, 4, 6);
  assert.equal(min, 6795);
  assert.equal(max, 6 * 6795);
  assert.equal(remaining(0, 2, 0, min, max), max);
  assert.equal(remaining(2, 2, 0, min, max), min);
  assert.equal(remaining(2, 2, 10_000, min, max), min - 10_000);

  const clock = new FakeClock();
  let firedAt = 0;
  const t0 = clock.now();
  new Suspicion("a", 2, min, max, clock, () => { firedAt = clock.now() - t0; });
  await clock.advance(max - 1);
  assert.equal(firedAt, 0, "a lone accuser waits the whole max");
  await clock.advance(1);
  assert.equal(firedAt, max);

  const t1 = clock.now();
  let fired2 = 0;
  const s = new Suspicion("a", 2, min, max, clock, () => { fired2 = clock.now() - t1; });
  assert.equal(s.confirm("a"), false, "the accuser does not confirm itself");
  assert.equal(s.confirm("b"), true);
  assert.equal(s.confirm("b"), false, "one confirmation per member");
  assert.equal(s.confirm("c"), true);
  assert.equal(s.confirm("d"), false, "no more than k");
  await clock.advance(min - 1);
  assert.equal(fired2, 0, "never before min (a suspicion timeout is honoured)");
  await clock.advance(1);
  assert.equal(fired2, min);
});
