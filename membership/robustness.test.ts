/**
 * Hostile input: random and truncated datagrams, datagrams sealed with a
 * wrong key, replayed datagrams and spoofed acks change nothing and crash
 * nothing.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { DEV_CLUSTER_KEY } from "../config/index.js";
import { Keyring } from "./keyring.js";
import { Sim } from "./sim.js";
import type { Msg } from "./messages.js";

function view(sim: Sim): string {
  return JSON.stringify(sim.live().map((n) => n.node.members().map((m) => [m.id, m.state, m.incarnation])));
}

test("10,000 random, truncated and bit-flipped datagrams change nothing and are all counted as dropped", async () => {
  const sim = new Sim({ n: 5, seed: 21 });
  sim.start();
  await sim.until(() => sim.converged(), 60_000);
  const target = sim.nodes[0]!;
  // Real sealed datagrams to mutilate: capture what the network carries.
  const captured: Uint8Array[] = [];
  const orig = sim.net.deliverPacket.bind(sim.net);
  sim.net.deliverPacket = (from, to, data) => { if (captured.length < 200) captured.push(Uint8Array.from(data)); orig(from, to, data); };
  await sim.run(5000);
  sim.net.deliverPacket = orig;
  assert.ok(captured.length >= 50);
  const before = view(sim);
  const dropped0 = Object.values(target.node.stats.dropped).reduce((a, b) => a + b, 0);
  let sent = 0;
  for (let i = 0; i < 10_000; i++) {
    let d: Uint8Array;
    const kind = i % 3;
    if (kind === 0) d = randomBytes(Math.floor(Math.random() * 1500));
    else {
      const src = captured[i % captured.length]!;
      if (kind === 1) d = src.subarray(0, Math.floor(Math.random() * src.length));
      else { d = Uint8Array.from(src); d[Math.floor(Math.random() * d.length)]! ^= 1 << (i % 8); }
    }
    target.node.swim.onPacket(d, "10.9.9.9:7946");
    sent++;
  }
  const dropped = Object.values(target.node.stats.dropped).reduce((a, b) => a + b, 0) - dropped0;
  assert.equal(dropped, sent, "every hostile datagram was dropped and counted");
  await sim.run(5000);
  assert.equal(view(sim), before);
  assert.ok(sim.converged());
});

test("datagrams sealed with a wrong key are dropped (auth), even when they carry valid messages", async () => {
  const sim = new Sim({ n: 5, seed: 22 });
  sim.start();
  await sim.until(() => sim.converged(), 60_000);
  const before = view(sim);
  const evil = new Keyring([randomBytes(32).toString("base64")], "sim");
  const msgs: Msg[] = [
    { t: "dead", id: "id-1", inc: 99, from: "id-3" },
    { t: "suspect", id: "id-2", inc: 99, from: "id-3" },
    { t: "alive", id: "intruder", addr: "10.66.0.1:7946", inc: 1, meta: sim.nodes[0]!.node.local().meta },
  ];
  const t = sim.nodes[0]!;
  const auth0 = t.node.stats.dropped.auth;
  for (let i = 0; i < 100; i++) t.node.swim.onPacket(evil.seal("p", "id-3", Date.now() * 1000 + i, Buffer.from(JSON.stringify(msgs))), sim.nodes[3]!.addr);
  assert.equal(t.node.stats.dropped.auth - auth0, 100);
  await sim.run(5000);
  assert.equal(view(sim), before);
  assert.equal(t.node.member("intruder"), undefined);
});

test("replayed datagrams are dropped (replay) and change nothing", async () => {
  const sim = new Sim({ n: 5, seed: 23 });
  sim.start();
  await sim.until(() => sim.converged(), 60_000);
  const toZero: { from: string; data: Uint8Array }[] = [];
  const orig = sim.net.deliverPacket.bind(sim.net);
  sim.net.deliverPacket = (from, to, data) => { if (to === sim.nodes[0]!.addr) toZero.push({ from, data: Uint8Array.from(data) }); orig(from, to, data); };
  // Capture a real suspicion episode: node 4 crashes and comes back.
  await sim.crash(4);
  await sim.until(() => sim.live().every((n) => n.node.member("id-4")?.state === "dead"), 60_000);
  await sim.run(10_000);
  sim.net.deliverPacket = orig;
  const n = sim.add(4, 10);
  n.node.start();
  await sim.until(() => sim.converged(), 60_000);
  const before = view(sim);
  const r0 = sim.nodes[0]!.node.stats.dropped.replay;
  assert.ok(toZero.length > 20);
  for (const p of toZero) sim.nodes[0]!.node.swim.onPacket(p.data, p.from);
  assert.equal(sim.nodes[0]!.node.stats.dropped.replay - r0, toZero.length, "every replay was refused");
  await sim.run(5000);
  assert.equal(view(sim), before, "the replayed dead verdicts did not kill node 4 again");
});

test("an ack with the right sequence number from the wrong member does not count (no ack spoofing)", async () => {
  const sim = new Sim({ n: 5, seed: 24 });
  sim.start();
  await sim.until(() => sim.converged(), 60_000);
  const prober = sim.nodes[0]!, victim = sim.nodes[2]!, liar = sim.nodes[3]!;
  const key = new Keyring([DEV_CLUSTER_KEY], "sim");
  let spoofed = 0;
  const orig = sim.net.deliverPacket.bind(sim.net);
  sim.net.deliverPacket = (from, to, data) => {
    if (from === prober.addr && to === victim.addr) {
      const o = key.open("p", data);
      if (o.ok) for (const m of JSON.parse(o.body.toString()) as Msg[]) {
        if (m.t === "ping") { spoofed++; liar.node.swim.send(prober.addr, [{ t: "ack", seq: m.seq }], false); }
      }
    }
    orig(from, to, data);
  };
  await sim.crash(2);
  await sim.until(() => prober.node.member(victim.node.localId)?.state === "dead", 60_000);
  assert.ok(spoofed > 0, "the liar did answer the pings meant for the crashed member");
});
