/**
 * A coordinator killed (SIGKILL) while it holds a key's conditional-write lock
 * blocks the key no longer than the lease's TTL: a child process takes the
 * lock on three in-process nodes over gRPC and renews it; while it lives
 * another node cannot take the key (even well past the TTL); once it is killed
 * the other node gets the lock within the TTL, without anyone releasing it.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { isBlobError } from "../blob/index.js";
import { QuorumKeyLocker } from "./key-lock.js";
import { startTestCluster } from "./fixture.js";

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), "key-lock-crash.child.js");
const TTL = 1500;
const c = await startTestCluster(3);
after(async () => c.close());

test("a lock holder SIGKILLed blocks the key for at most the lease TTL", async () => {
  const addresses = Object.fromEntries(c.nodes.map((n) => [n.id, n.address]));
  const child = spawn(process.execPath, [CHILD, JSON.stringify({ addresses, keys: c.nodes[0]!.keys, bucket: "b", key: "k", ttlMs: TTL })], { stdio: ["ignore", "pipe", "inherit"] });
  const exited = new Promise((r) => child.once("exit", r));
  try {
    await new Promise<void>((resolve, reject) => {
      let out = "";
      child.stdout.on("data", (b: Buffer) => { out += b; if (out.includes("held")) resolve(); });
      child.once("exit", (code) => reject(new Error(`child exited (${code}) before it held the lock: ${out}`)));
    });
    const self = c.nodes[1]!;
    const { coord, peers } = c.coordinator(1);
    const other = new QuorumKeyLocker({
      self: self.id, ttlMs: TTL, replicas: (b, k) => coord.preferenceList(b, k),
      target: (id) => (id === self.id ? self.leases : peers.get(id)), backoff: { baseMs: 5, maxMs: 50 },
    });
    // Alive, the holder renews: two TTLs later the key is still taken.
    await assert.rejects(other.acquire("b", "k", 2 * TTL), (e) => isBlobError(e, "ConditionalRequestConflict"));
    child.kill("SIGKILL");
    await exited;
    const killedAt = Date.now();
    const release = await other.acquire("b", "k", 3 * TTL);
    const waited = Date.now() - killedAt;
    // Its last renewal was at most TTL/3 before the kill: the leases ran out between 2/3 TTL and TTL after it.
    assert.ok(waited <= TTL + 300, `the key was free within the TTL after the kill (${waited} ms)`);
    assert.ok(waited >= TTL / 2, `and not before the dead holder's leases ran out (${waited} ms)`);
    release();
    await other.settled();
  } finally {
    child.kill("SIGKILL");
  }
});
