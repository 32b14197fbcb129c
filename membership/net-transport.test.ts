/** The real UDP/TCP transport, in process, on loopback. */
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { DEV_CLUSTER_KEY } from "../config/index.js";
import { ThocError } from "../errors/index.js";
import { loopbackBlock, waitFor } from "../test/harness.js";
import { Keyring } from "./keyring.js";
import { NetTransport } from "./net-transport.js";
import { GossipNode } from "./node.js";
import { presetTimers, testMeta } from "./sim.js";
import { realClock } from "./types.js";

test("three in-process nodes on real sockets join through a seed and converge", async () => {
  const block = loopbackBlock();
  const nodes: GossipNode[] = [];
  try {
    let seed = "";
    for (let i = 0; i < 3; i++) {
      const t = await NetTransport.open({ bind: `${block}.${i + 1}`, port: 0 });
      if (i === 0) seed = t.address;
      const n = new GossipNode({
        id: `node-${i}`, meta: testMeta(`n${i}`, t.address), transport: t, clock: realClock,
        keyring: new Keyring([DEV_CLUSTER_KEY], "t"), timers: presetTimers("test"), seeds: [seed],
      });
      n.start();
      nodes.push(n);
    }
    await waitFor("converged", () => nodes.every((n) => n.members().length === 3 && n.members().every((m) => m.state === "alive")), 10_000, 50);
    await nodes[2]!.leave(500);
    await nodes[2]!.stop();
    await waitFor("left", () => nodes.slice(0, 2).every((n) => n.member("node-2")?.state === "left"), 5000, 50);
  } finally {
    for (const n of nodes) await n.stop();
  }
});

test("bind conflicts are ThocErrors; sends to bad addresses and requests to closed ports never throw synchronously", async () => {
  const bind = `${loopbackBlock()}.1`;
  const a = await NetTransport.open({ bind, port: 0 });
  let errors = 0;
  const b = await NetTransport.open({ bind: `${bind.slice(0, -1)}2`, port: 0, onError: () => { errors++; } });
  try {
    const port = Number(a.address.split(":")[1]);
    await assert.rejects(NetTransport.open({ bind, port }), (e: ThocError) =>
      e instanceof ThocError && e.code === "failed_precondition" && /already in use/.test(e.message));
    await assert.rejects(NetTransport.open({ bind: "192.0.2.77", port: 0 }), (e: ThocError) => e.code === "failed_precondition" && /check --bind/.test(e.message));
    b.sendPacket("no-such-host.invalid:7946", Buffer.from("x"));
    b.sendPacket(`${bind}:99999`, Buffer.from("x"));
    await waitFor("send errors reported", () => errors >= 1, 5000, 20);
    await assert.rejects(b.request(`${bind}:1`, Buffer.from("x"), 1000));
  } finally {
    await a.close();
    await b.close();
  }
});

/** A raw TCP client: sends bytes and reports when the agent closes the connection. */
function rawConn(address: string): { sock: net.Socket; closed: Promise<number> } {
  const i = address.lastIndexOf(":");
  const t0 = Date.now();
  const sock = net.connect(Number(address.slice(i + 1)), address.slice(0, i));
  sock.on("error", () => {});
  return { sock, closed: new Promise((r) => sock.on("close", () => r(Date.now() - t0))) };
}

const prefix = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b; };

test("inbound streams are capped: oversized prefix refused at once, a dripping frame cut at its deadline, connections over the limit closed on accept", { timeout: 20_000 }, async () => {
  const bind = `${loopbackBlock()}.1`;
  const a = await NetTransport.open({ bind, port: 0, maxFrameBytes: 64 << 10, maxInbound: 4, frameTimeoutMs: 600 });
  a.listen({ packet: () => {}, request: async (b) => b });
  const b = await NetTransport.open({ bind: `${bind.slice(0, -1)}2`, port: 0 });
  try {
    // A length prefix over the cap: closed before the agent buffers anything.
    const big = rawConn(a.address);
    big.sock.write(prefix((64 << 10) + 1));
    const bigMs = await big.closed;
    assert.ok(bigMs < 300, `oversized prefix closed after ${bigMs} ms`);
    assert.equal(a.refused.oversize, 1);

    // A frame within the cap whose bytes drip in: cut at the deadline although it is never idle.
    const drip = rawConn(a.address);
    drip.sock.write(Buffer.concat([prefix(1000), Buffer.alloc(500)]));
    const iv = setInterval(() => drip.sock.write(Buffer.from([1])), 100);
    const dripMs = await Promise.race([drip.closed, new Promise<number>((r) => setTimeout(() => r(-1), 3000))]);
    clearInterval(iv);
    drip.sock.destroy();
    assert.ok(dripMs >= 500 && dripMs < 1500, `dripping frame closed after ${dripMs} ms`);
    assert.equal(a.refused.timeout, 1);

    // Four connections held open: a fifth is closed on accept while they last.
    const held = [0, 1, 2, 3].map(() => rawConn(a.address));
    await Promise.all(held.map((h) => new Promise((r) => h.sock.once("connect", r))));
    await new Promise((r) => setTimeout(r, 50));
    const fifth = rawConn(a.address);
    const fifthMs = await fifth.closed;
    assert.ok(fifthMs < 300, `fifth connection closed after ${fifthMs} ms`);
    assert.ok(a.refused.overLimit >= 1);
    await Promise.all(held.map((h) => h.closed));

    // None of it stops a real request.
    const resp = await b.request(a.address, Buffer.from("hello"), 2000);
    assert.equal(Buffer.from(resp).toString(), "hello");
  } finally {
    await a.close();
    await b.close();
  }
});
