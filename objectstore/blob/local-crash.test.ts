import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { LocalStore } from "../../store/index.js";
import { LocalBlobStore } from "./local.js";
import { filesUnder, readAll } from "./testutil.js";

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), "local-crash.child.js");

/** Runs the child until it prints `stage`, then SIGKILLs it. */
async function killAt(dir: string, stage: string): Promise<void> {
  const p = spawn(process.execPath, [CHILD, dir, stage], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  await new Promise<void>((resolve, reject) => {
    p.stdout.on("data", (b: Buffer) => {
      out += b;
      if (out.includes(stage)) { p.kill("SIGKILL"); resolve(); }
    });
    p.on("exit", (code) => reject(new Error(`child exited (${code}) before ${stage}: ${out}`)));
  });
  await new Promise((r) => p.once("exit", r));
}

for (const [stage, want, field] of [
  ["streaming", 1, "tmpFiles"],
  ["placed", 1, "orphanFiles"],
  ["committed", 2, "garbageFiles"],
] as const) {
  test(`SIGKILL with the new version ${stage}: the restart holds v${want} byte-exact and no stray file`, async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "thoc-crash-"));
    try {
      await killAt(dir, stage);
      const store = await LocalStore.open(dir);
      const blobs = await LocalBlobStore.open({ store });
      try {
        assert.equal(blobs.recovery[field], 1, JSON.stringify(blobs.recovery));
        const got = await readAll((await blobs.getObject("b", "k")).body);
        const expected = want === 1 ? Buffer.alloc(3 << 20, 1) : Buffer.alloc(2 << 20, 2);
        assert.ok(got.equals(expected), `got ${got.length} bytes`);
        assert.deepEqual(await readdir(path.join(dir, "blobs", "tmp")), []);
        assert.equal((await filesUnder(path.join(dir, "blobs", "data"))).length, 1);
      } finally {
        await blobs.close();
        await store.close();
      }
      // The crashed generation is swept once, not at every start.
      const store2 = await LocalStore.open(dir);
      const blobs2 = await LocalBlobStore.open({ store: store2 });
      assert.deepEqual(blobs2.recovery.sweptGenerations, []);
      await blobs2.close();
      await store2.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}
