import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { CLI } from "../test/harness.js";

test("systemd-analyze verify accepts the hardened unit", async () => {
  const unit = await readFile(new URL("../../systemd/thoc-node.service", import.meta.url), "utf8");
  for (const k of ["ProtectSystem=strict", "ReadWritePaths=/var/lib/thoc", "Restart=on-failure", "NoNewPrivileges=yes", "RestartPreventExitStatus=2", "StateDirectoryMode=0710", "Type=notify", "NotifyAccess=main", "WatchdogSec=30s"]) {
    assert.ok(unit.includes(k), k);
  }
  // verify checks that ExecStart exists: point the packaged path (/usr/bin/thoc-node) at this checkout's CLI.
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-unit-"));
  const f = path.join(dir, "thoc-node.service");
  await writeFile(f, unit.replace("/usr/bin/thoc-node", CLI));
  const r = spawnSync("systemd-analyze", ["verify", f], { encoding: "utf8" });
  if (r.error) throw new Error("systemd-analyze missing (Debian package systemd): " + r.error.message);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr.trim(), "", r.stderr);
});
