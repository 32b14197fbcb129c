/** The progress renderer: the terminal bar and the plain lines, with a fake clock and output. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Progress, formatBar, formatEta, formatLine } from "./progress.js";

const MiB = 1 << 20;

test("formatEta: seconds, minutes, hours; ? without a rate", () => {
  assert.equal(formatEta(0), "0s");
  assert.equal(formatEta(4.2), "5s");
  assert.equal(formatEta(245), "4m05s");
  assert.equal(formatEta(3720), "1h02m");
  assert.equal(formatEta(Infinity), "?");
});

test("formatBar: bar, percent, amounts, rate and ETA fitted to the terminal", () => {
  // 100 MiB of 400 in 10 s: 10 MiB/s, 300 MiB left, 30 s.
  const p = { label: "upload debian", done: 100 * MiB, total: 400 * MiB, elapsedMs: 10_000 };
  const line = formatBar(p, 120);
  assert.equal(line, "upload debian [##########------------------------------]  25%  100.0 MiB / 400.0 MiB   10.0 MiB/s  ETA 30s   ");
  assert.ok(line.length <= 119, "one column left free, so the cursor never wraps");
  // Narrow: the bar goes first, the figures stay.
  const narrow = formatBar(p, 60);
  assert.doesNotMatch(narrow, /\[/);
  assert.ok(narrow.length <= 59, narrow);
  const full = formatBar({ ...p, done: 400 * MiB }, 120);
  assert.match(full, /\[#{40}\] 100% .* ETA 0s {4}$/);
  assert.equal(full.length, line.length, "the line keeps its width as the figures change");
  assert.match(formatBar({ ...p, done: 0, elapsedMs: 0 }, 120), /\[-{40}\]   0%        0 B \/ 400.0 MiB        0 B\/s  ETA \? {5}$/);
});

test("formatLine: one plain sentence with no control characters", () => {
  const l = formatLine({ label: "upload img", done: 3 * MiB, total: 12 * MiB, elapsedMs: 2000 });
  assert.equal(l, "upload img: 3.0 MiB of 12.0 MiB (25%), 1.5 MiB/s, ETA 6s");
});

function fakeOut(isTTY: boolean) {
  const writes: string[] = [];
  return { writes, out: { isTTY, columns: 100, write: (s: string) => writes.push(s) } };
}

test("Progress off a terminal: a first line, then at most one per interval, then the 100% line; no \\r or escapes", () => {
  let now = 0;
  const { writes, out } = fakeOut(false);
  const p = new Progress("upload x", 10 * MiB, { out, intervalMs: 5000, now: () => now });
  for (let i = 0; i < 9; i++) { now += 1000; p.add(MiB); }
  p.finish();
  assert.deepEqual(writes, [
    "upload x: 0 B of 10.0 MiB (0%), 0 B/s, ETA ?\n",
    "upload x: 5.0 MiB of 10.0 MiB (50%), 1.0 MiB/s, ETA 5s\n",
    "upload x: 10.0 MiB of 10.0 MiB (100%), 1.1 MiB/s, ETA 0s\n",
  ]);
  p.finish();
  assert.equal(writes.length, 3, "finish is once");
});

test("Progress on a terminal: the bar redrawn in place, throttled, and a newline at the end", () => {
  let now = 0;
  const { writes, out } = fakeOut(true);
  const p = new Progress("upload x", 4 * MiB, { out, redrawMs: 100, now: () => now });
  p.add(MiB); // 0 ms after the first draw: throttled
  now += 150; p.add(MiB);
  now += 150; p.add(2 * MiB); // reaches the total: the final draw
  assert.equal(writes.length, 4, writes.join("|"));
  for (const w of writes.slice(0, 3)) assert.match(w, /^\r.*\x1b\[K$/);
  assert.match(writes[1]!, / 50%  2.0 MiB \/ 4.0 MiB/);
  assert.match(writes[2]!, /100%/);
  assert.equal(writes[3], "\n");
});

test("Progress on a pty that reports 0 columns (no size set) still draws the bar, for 80 columns", () => {
  const writes: string[] = [];
  const p = new Progress("upload x", MiB, { out: { isTTY: true, columns: 0, write: (s: string) => writes.push(s) }, now: () => 0 });
  p.finish();
  assert.match(writes[0]!, /^\rupload x \[-+\]   0%/);
  assert.ok(writes[0]!.length - 4 <= 79, "within 80 columns (less the \\r and the clear)");
});
