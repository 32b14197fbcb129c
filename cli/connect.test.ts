/** The CLI's target: a socket file nobody listens on (left by a killed agent) is not the agent. */
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { spawnSync } from "node:child_process";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { socketAnswers } from "./connect.js";

test("socketAnswers: a listening socket answers; a stale socket file and a missing one do not", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-sock-"));
  try {
    const live = path.join(dir, "live.sock"), stale = path.join(dir, "stale.sock");
    const server = net.createServer((c) => c.destroy());
    await new Promise<void>((r) => server.listen(live, r));
    // A socket file whose listener was SIGKILLed: the file stays, nobody accepts.
    spawnSync(process.execPath, ["-e", `require("net").createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, "SIGKILL"))`]);
    assert.ok((await stat(stale)).isSocket());
    assert.equal(await socketAnswers(live), true);
    assert.equal(await socketAnswers(stale), false);
    assert.equal(await socketAnswers(path.join(dir, "none.sock")), false);
    server.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
