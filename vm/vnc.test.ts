/** VNC tokens (single use, per VM, expiring) and the WebSocket framing the proxy speaks. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeFrames, encodeFrame } from "./vnc-proxy.js";
import { VncTokens } from "./vnc.js";

test("tokens: one VM, once, until they expire", async () => {
  const t = new VncTokens(() => "ws://h:7402", 50);
  const a = t.issue("vm1");
  assert.match(a.url, /^ws:\/\/h:7402\/vnc\/vm1\?token=[A-Za-z0-9_-]{32}$/);
  assert.equal(t.redeem("vm2", a.token), false, "not for another VM");
  const b = t.issue("vm1");
  assert.equal(t.redeem("vm1", b.token), true);
  assert.equal(t.redeem("vm1", b.token), false, "spent");
  const c = t.issue("vm1");
  await new Promise((r) => setTimeout(r, 80));
  assert.equal(t.redeem("vm1", c.token), false, "expired");
  assert.equal(t.redeem("vm1", "x".repeat(32)), false);
});

test("frames: server frames unmasked, client frames masked, 7/16/64-bit lengths, partial input kept", () => {
  for (const n of [0, 5, 125, 126, 65535, 65536, 200_000]) {
    const payload = Buffer.alloc(n, 7);
    const { frames, rest } = decodeFrames(encodeFrame(payload));
    assert.equal(frames.length, 1);
    assert.equal(frames[0]!.opcode, 2);
    assert.ok(frames[0]!.payload.equals(payload), `length ${n}`);
    assert.equal(rest.length, 0);
  }
  // A masked client frame ("RFB"), split across two reads.
  const mask = Buffer.from([1, 2, 3, 4]);
  const body = Buffer.from("RFB");
  const masked = Buffer.from(body.map((b, i) => b ^ mask[i & 3]!));
  const frame = Buffer.concat([Buffer.from([0x82, 0x80 | body.length]), mask, masked]);
  const first = decodeFrames(frame.subarray(0, 4));
  assert.equal(first.frames.length, 0);
  const second = decodeFrames(Buffer.concat([first.rest, frame.subarray(4)]));
  assert.equal(second.frames[0]!.payload.toString(), "RFB");
});
