import { test } from "node:test";
import assert from "node:assert/strict";
import { pooledRandomBytes } from "./random.js";

test("pooledRandomBytes hands out distinct random values of the size asked, across pool refills", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const b = pooledRandomBytes(12);
    assert.equal(b.length, 12);
    seen.add(b.toString("hex"));
  }
  // 24 000 bytes: several 4 KiB refills; a repeated or zeroed 12-byte value would show as a duplicate.
  assert.equal(seen.size, 2000);
  assert.equal(pooledRandomBytes(1000).length, 1000);
  // Bytes look random: no value dominates a large sample.
  const counts = new Array<number>(256).fill(0);
  for (let i = 0; i < 1000; i++) for (const x of pooledRandomBytes(16)) counts[x]!++;
  assert.ok(Math.max(...counts) < 150, `byte histogram too skewed: max ${Math.max(...counts)}`);
});

test("a caller changing its bytes does not change the next value", () => {
  const a = pooledRandomBytes(8);
  a.fill(0);
  assert.notDeepEqual(pooledRandomBytes(8), Buffer.alloc(8));
});
