import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { loadConfig } from "../../config/index.js";
import { LocalStore } from "../../store/index.js";
import { KeyRegistry } from "./registry.js";

async function withStore(fn: (dir: string) => Promise<void>) {
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-keys-"));
  try { await fn(dir); } finally { await rm(dir, { recursive: true, force: true }); }
}
const CLUSTER_KEY = Buffer.alloc(32, 7).toString("base64");
const cfg = (dev: boolean, env: Record<string, string> = {}) => loadConfig({ dev, env: { THOC_CLUSTER_KEYS: CLUSTER_KEY, ...env }, flags: { "--bind": "127.0.0.1" } });

test("--dev with no keys configured generates a root pair once and keeps it", () => withStore(async (dir) => {
  let s = await LocalStore.open(dir);
  const a = await KeyRegistry.open(s, cfg(true));
  assert.equal(a.rootSource, "generated");
  const root = a.rootCredentials()!;
  assert.match(root.accessKeyId, /^THOC[A-Z2-7]{16}$/);
  assert.match(root.secretKey, /^[A-Za-z0-9]{40}$/);
  assert.deepEqual(await a.lookup(root.accessKeyId), { secretKey: root.secretKey, owner: "root" });
  await s.close();
  s = await LocalStore.open(dir);
  const b = await KeyRegistry.open(s, cfg(true));
  assert.equal(b.rootSource, "stored");
  assert.deepEqual(b.rootCredentials(), root);
  await s.close();
}));

test("root keys from the environment win; half a pair is refused; no --dev means no generated key", () => withStore(async (dir) => {
  const s = await LocalStore.open(dir);
  try {
    const r = await KeyRegistry.open(s, cfg(true, { THOC_S3_ACCESS_KEY: "myaccess", THOC_S3_SECRET_KEY: "mysecret123" }));
    assert.equal(r.rootSource, "config");
    assert.equal((await r.lookup("myaccess"))?.secretKey, "mysecret123");
    assert.throws(() => cfg(false, { THOC_S3_ACCESS_KEY: "only" }), /s3.secretKey/);
    const c = cfg(false);
    await assert.rejects(KeyRegistry.open(s, { ...c, s3: { ...c.s3, accessKey: "only" } }), /must be set together/);
    const none = await KeyRegistry.open(s, cfg(false));
    assert.equal(none.rootSource, "none");
    assert.equal(await none.lookup("myaccess"), undefined);
  } finally {
    await s.close();
  }
}));

test("created keys: secret once, listed without secret, looked up, deleted; root cannot be deleted", () => withStore(async (dir) => {
  const s = await LocalStore.open(dir);
  try {
    const r = await KeyRegistry.open(s, cfg(true));
    const { key, secretKey } = await r.create("alice", "ci");
    assert.equal(key.owner, "alice");
    assert.equal((await r.lookup(key.accessKeyId))?.secretKey, secretKey);
    const list = await r.list();
    assert.deepEqual(list.map((k) => [k.root, k.accessKeyId]), [[true, r.rootCredentials()!.accessKeyId], [false, key.accessKeyId]]);
    assert.ok(!JSON.stringify(list).includes(secretKey), "a listing never carries a secret");
    assert.ok(!JSON.stringify(list).includes(r.rootCredentials()!.secretKey));
    await assert.rejects(r.create("bad owner!"), /owner/);
    await assert.rejects(r.create("thoc-system"), /reserved for the agent/);
    await assert.rejects(r.delete(r.rootCredentials()!.accessKeyId), (e: { code?: string }) => e.code === "failed_precondition");
    await r.delete(key.accessKeyId);
    assert.equal(await r.lookup(key.accessKeyId), undefined);
    await assert.rejects(r.delete(key.accessKeyId), (e: { code?: string }) => e.code === "not_found");
  } finally {
    await s.close();
  }
}));
