import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { AuditFile, targetOf, type AuditRecord } from "./audit.js";

const rec = (i: number): AuditRecord => ({
  time: new Date(0).toISOString(), timeMs: 0, node: "n1", who: "local uid 0 gid 0 pid 1", caller: { kind: "local" },
  method: "/thoc.node.v1.VmService/CreateVm", role: "operator", target: { "spec.name": `vm-${i}` }, outcome: "OK", code: 0, requestId: String(i),
});

test("audit.log is 0600 and rotates by size, keeping `files` old logs", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-audit-"));
  try {
    const file = path.join(dir, "audit.log");
    const f = new AuditFile(file, { maxBytes: 4096, files: 2 });
    const line = JSON.stringify(rec(0)).length + 1;
    for (let i = 0; i < 200; i++) f.write(rec(i));
    f.close();
    assert.equal(statSync(file).mode & 0o777, 0o600);
    for (const n of ["", ".1", ".2"]) {
      assert.ok(statSync(file + n).size <= 4096, `audit.log${n} within maxBytes`);
      assert.equal(statSync(file + n).mode & 0o777, 0o600, `audit.log${n} mode`);
    }
    assert.ok(!existsSync(file + ".3"), "only 2 old logs kept");
    // The newest records are in the current file, whole lines, in order.
    const last = readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l) as AuditRecord);
    assert.equal(last.at(-1)!.requestId, "199");
    assert.ok(statSync(file + ".1").size > 4096 - line, "a rotated log was filled before rotating");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("a record's target takes names and ids only, never a secret", () => {
  const t = targetOf(
    { spec: { name: "web1", image: "tiny", cloudInit: { username: "op", password: "hunter2", sshPublicKey: "ssh-ed25519 AAAA" } }, noStart: false },
    { key: { accessKeyId: "THOCKEY", owner: "root" }, secretKey: "s3cr3t" },
  );
  assert.deepEqual(t, { "spec.name": "web1", "spec.image": "tiny", "key.accessKeyId": "THOCKEY", "key.owner": "root" });
});
