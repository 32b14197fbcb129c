import { test } from "node:test";
import assert from "node:assert/strict";
import { HlcClock, compareHlc, decodeHlc, encodeHlc, isHlc, maxHlc } from "./hlc.js";
import { FakeClock } from "../core/index.js";
import { ThocError } from "../errors/index.js";

const manualClock = (start: number) => new FakeClock(start);

test("timestamps are strictly increasing even when the wall clock stalls or goes backwards", () => {
  const wall = manualClock(1_700_000_000_000);
  const h = new HlcClock("node-a", { clock: wall });
  const seen: string[] = [];
  for (let i = 0; i < 50; i++) {
    if (i === 10) wall.set(wall.now() - 5_000); // NTP step backwards
    if (i === 30) wall.set(wall.now() + 5_003); // catches up and passes the last timestamp
    seen.push(h.now());
  }
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i - 1]! < seen[i]!, `${seen[i - 1]} < ${seen[i]}`);
  // Physical time never went backwards.
  assert.ok(seen.every((s) => decodeHlc(s).physical >= 1_700_000_000_000));
  // A forward wall clock resets the logical counter.
  assert.equal(decodeHlc(seen[30]!).logical, 0);
});

test("encoding is fixed-width and string order equals timestamp order", () => {
  const a = encodeHlc({ physical: 1, logical: 0xffff, node: "z" });
  const b = encodeHlc({ physical: 2, logical: 0, node: "a" });
  assert.equal(a.split(".")[0]!.length, 12);
  assert.equal(a.split(".")[1]!.length, 8);
  assert.ok(compareHlc(a, b) < 0);
  assert.deepEqual(decodeHlc(a), { physical: 1, logical: 0xffff, node: "z" });
  assert.ok(isHlc(a) && !isHlc("123") && !isHlc(`${a}.x`));
  assert.equal(maxHlc(a, b), b);
  assert.equal(maxHlc(undefined, a), a);
  assert.throws(() => encodeHlc({ physical: 1, logical: 0, node: "has.dot" }), ThocError);
});

test("receive/merge: the next local timestamp follows every received one", () => {
  const wallA = manualClock(1000);
  const wallB = manualClock(1000 + 5_000); // B's clock runs 5 s ahead
  const a = new HlcClock("a", { clock: wallA });
  const b = new HlcClock("b", { clock: wallB });
  const fromB = b.now();
  const merged = a.update(fromB);
  assert.ok(merged > fromB, "merged timestamp is after the received one");
  assert.ok(a.now() > merged);
  // A keeps B's physical time (its own wall clock is behind) and counts logically.
  assert.equal(decodeHlc(a.now()).physical, 6000);
  // Equal physical and logical on both sides: logical = max + 1.
  const c = new HlcClock("c", { clock: manualClock(6000) });
  const x = c.update(a.peek());
  assert.equal(decodeHlc(x).logical, decodeHlc(a.peek()).logical + 1);
  // Receiving an old timestamp does not move us backwards.
  const before = a.now();
  assert.ok(a.update(encodeHlc({ physical: 1, logical: 0, node: "old" })) > before);
});

test("a timestamp too far in the future is refused", () => {
  const a = new HlcClock("a", { clock: manualClock(1000), maxDriftMs: 100 });
  assert.throws(() => a.update(encodeHlc({ physical: 2000, logical: 0, node: "skewed" })),
    (e: ThocError) => e.code === "failed_precondition" && /NTP/.test(e.message));
  assert.doesNotThrow(() => a.update(encodeHlc({ physical: 1100, logical: 0, node: "ok" })));
});

test("ties break deterministically by node id", () => {
  const wall = manualClock(42);
  const a = new HlcClock("node-a", { clock: wall }).now();
  const b = new HlcClock("node-b", { clock: wall }).now();
  assert.notEqual(a, b);
  assert.ok(a < b);
  const sorted1 = [b, a].sort(compareHlc);
  const sorted2 = [a, b].sort(compareHlc);
  assert.deepEqual(sorted1, sorted2);
});

test("the logical counter overflow borrows a millisecond instead of wrapping", () => {
  const wall = manualClock(10);
  const h = new HlcClock("n", { clock: wall });
  const big = encodeHlc({ physical: 10, logical: 0xffffffff, node: "m" });
  const t = h.update(big);
  assert.ok(t > big);
  assert.deepEqual({ ...decodeHlc(t), node: "n" }, { physical: 11, logical: 0, node: "n" });
});
