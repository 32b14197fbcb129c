/** The real UDP/TCP transport, in process, on loopback. */
import { test } from "node:test";
import assert from "node:assert/strict";
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
        keyring: new Keyring([DEV_CLUSTER_KEY], "t"), timers: presetTimers("local"), seeds: [seed],
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
