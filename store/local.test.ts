import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { LocalStore } from "./index.js";

test("node id is created once and kept across reopen; generation counts starts", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-store-"));
  try {
    const a = await LocalStore.open(dir);
    const id = a.nodeId;
    assert.match(id, /^[0-9a-f-]{36}$/);
    await a.json<{ x: number }>("t").put("k", { x: 1 });
    await a.close();
    const b = await LocalStore.open(dir);
    assert.equal(b.nodeId, id);
    assert.equal(b.generation, 2);
    assert.deepEqual(await b.json<{ x: number }>("t").get("k"), { x: 1 });
    await b.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("a data dir in use is refused with a clear message", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-store-"));
  try {
    const a = await LocalStore.open(dir);
    // classic-level refuses a second open of the same LOCK file, in-process too.
    await assert.rejects(LocalStore.open(dir), (e: Error) => /in use by another agent/.test(e.message));
    await a.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
