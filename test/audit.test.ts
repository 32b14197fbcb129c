/**
 * The audit trail end to end on a production-mode agent: the CLI (as root, over
 * the local socket) creates and deletes a VM with a cloud-init password,
 * creates an S3 key, and an anonymous TCP caller is refused; each shows up in
 * <dataDir>/audit.log and on `thoc-node events` (a --follow stream opened
 * before, and the recent events after) with who and outcome. The S3 secret
 * and the password appear nowhere in audit.log.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { CLI, REPO_ROOT, runCli, startCluster, waitFor, type AgentProcess, type Cluster } from "./harness.js";

let c: Cluster;
let a: AgentProcess;
before(async () => { c = await startCluster(1, { dev: false }); a = c.agents[0]!; });
after(() => c.stop());

interface Rec { who: string; method: string; target: Record<string, string>; outcome: string; requestId: string; caller: { kind: string; uid?: number } }

test("mutating calls and refusals are in audit.log and the event stream, with who and outcome; no secret in audit.log", async () => {
  // A follower from the start: it must see every event live.
  const follower = spawn(process.execPath, [CLI, ...a.cliTarget, "events", "--follow", "--json", "--kind", "audit"], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let followed = "";
  follower.stdout!.on("data", (b: Buffer) => (followed += b));
  try {
    const kern = path.join(c.root, "kernel");
    writeFileSync(kern, Buffer.alloc(8192, 1));
    let r = await a.cli(["image", "import", "tiny", "--kernel", kern, "--initrd", kern, "--cmdline", "console=ttyS0"]);
    assert.equal(r.code, 0, r.stderr);
    const password = "audit-pw-Zq8!x";
    r = await runCli([...a.cliTarget, "vm", "create", "aud1", "--image", "tiny", "--vcpus", "1", "--ram", "128", "--disk", "1", "--user", "op", "--password-stdin"], 20_000, {}, password + "\n");
    assert.equal(r.code, 0, r.stderr);
    r = await a.cli(["vm", "delete", "aud1"]);
    assert.equal(r.code, 0, r.stderr);
    r = await a.cli(["s3", "key", "create", "--owner", "audit-owner", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const { accessKeyId, secretKey } = JSON.parse(r.stdout) as { accessKeyId: string; secretKey: string };
    // Refused: anonymous over TCP (TLS that trusts the agent, no client certificate).
    r = await runCli(["--addr", a.grpcAddress, "s3", "key", "create"], 20_000, { THOC_TLS_CA: a.clientTls?.ca ?? "", THOC_TLS_CERT: "", THOC_TLS_KEY: "" });
    assert.equal(r.code, 1);
    // A read is not audited.
    assert.equal((await a.cli(["vm", "list"])).code, 0);

    const file = path.join(a.dataDir, "audit.log");
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const text = readFileSync(file, "utf8");
    assert.ok(!text.includes(secretKey), "the S3 secret is not in audit.log");
    assert.ok(!text.includes(password), "the cloud-init password is not in audit.log");
    const recs = text.trim().split("\n").map((l) => JSON.parse(l) as Rec);
    const short = recs.map((x) => [x.method.replace("/thoc.node.v1.", ""), x.outcome, x.caller.kind, x.target["spec.name"] ?? x.target.name ?? x.target["key.accessKeyId"] ?? x.target.owner ?? ""]);
    assert.deepEqual(short, [
      ["ImageService/ImportImage", "OK", "local", ""],
      ["VmService/CreateVm", "OK", "local", "aud1"],
      ["VmService/DeleteVm", "OK", "local", "aud1"],
      ["KeyService/CreateKey", "OK", "local", accessKeyId],
      ["KeyService/CreateKey", "UNAUTHENTICATED", "anonymous", "root"],
    ]);
    assert.match(recs[1]!.who, /^local uid 0 gid 0 pid \d+$/);
    assert.equal(recs[4]!.who, "anonymous (tls)");
    assert.equal(recs[0]!.target["meta.name"], "tiny", "a client stream's target comes from its first message");
    assert.equal(new Set(recs.map((x) => x.requestId)).size, recs.length, "one request id per call");

    // The same five events on the stream: followed live, and as the recent events afterwards.
    const live = (await waitFor("5 followed events", () => {
      const lines = followed.trim().split("\n").filter(Boolean);
      return lines.length >= 5 && lines.map((l) => JSON.parse(l) as Rec);
    }, 10_000)) as Rec[];
    assert.deepEqual(live.map((e) => [e.method, e.outcome, e.requestId]), recs.map((x) => [x.method, x.outcome, x.requestId]));
    r = await a.cli(["events", "--json", "--kind", "audit"]);
    assert.equal(r.code, 0, r.stderr);
    const recent = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as Rec & { who: string });
    assert.deepEqual(recent.map((e) => [e.method, e.outcome, e.who]), recs.map((x) => [x.method, x.outcome, x.who]));
    r = await a.cli(["events"]);
    assert.match(r.stdout, /UNAUTHENTICATED\s+KeyService\/CreateKey\s+owner=root\s+by anonymous \(tls\)/);

    // Stopping the agent ends a followed stream cleanly, well inside the shutdown budget.
    const t0 = Date.now();
    const followerExit = new Promise<number | null>((resolve) => follower.once("exit", resolve));
    assert.equal(await a.kill("SIGTERM"), 0);
    assert.equal(await followerExit, 0);
    assert.ok(Date.now() - t0 < 2500, `the agent and the follower stopped in ${Date.now() - t0} ms`);
  } finally {
    follower.kill();
  }
});
