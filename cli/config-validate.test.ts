/**
 * `thoc-node config validate` against `thoc-node agent` on the same files and
 * environment: a bad config gets the agent's very message and exit code 2, a
 * good one exit 0 and a summary, and no secret is ever printed.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { CLI, loopbackBlock } from "../test/harness.js";

let dir = "";
const key = randomBytes(32).toString("base64");
before(async () => { dir = await mkdtemp(path.join(tmpdir(), "thoc-config-validate-")); });
after(async () => { await rm(dir, { recursive: true, force: true }); });

interface Run { code: number | null; stdout: string; stderr: string }

function run(args: string[], env: Record<string, string> = {}): Promise<Run> {
  // Only the THOC_* variables a case sets: none of the machine's.
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("THOC_")));
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { cwd: dir, env: { ...base, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "", stderr = "";
    p.stdout.on("data", (b: Buffer) => (stdout += b));
    p.stderr.on("data", (b: Buffer) => (stderr += b));
    const t = setTimeout(() => p.kill("SIGKILL"), 30_000);
    // close, not exit: exit can come before the pipes have given up their last bytes (seen under load: an empty stderr).
    p.on("close", (code) => { clearTimeout(t); resolve({ code, stdout, stderr }); });
  });
}

async function configFile(name: string, yaml: string): Promise<string> {
  const f = path.join(dir, `${name}.yaml`);
  await writeFile(f, yaml);
  return f;
}

/** A node on a loopback address of its own (plaintext is allowed there) with its data in the test dir. */
const base = (n: string) => `name: ${n}\nbind: ${loopbackBlock()}.1\ndataDir: ${path.join(dir, n)}\nhypervisorUri: test:///default\n`;

test("a good config: exit 0, a summary naming the environment overrides, and never the secrets", async () => {
  const f = await configFile("good", base("good"));
  const secret = "s3-secret-that-must-not-show-0123456789";
  const env = { THOC_CLUSTER_KEYS: key, THOC_S3_ACCESS_KEY: "AKIDVALIDATE", THOC_S3_SECRET_KEY: secret, THOC_GRPC_PORT: "7410" };
  const r = await run(["config", "validate", f], env);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^ok: the configuration is valid\n/);
  assert.match(r.stdout, new RegExp(`file\\s+${f.replace(/[.]/g, "\\.")}\\n`));
  assert.match(r.stdout, /grpc 7410,/, "the environment's value, as the agent would use it");
  assert.match(r.stdout, /THOC_CLUSTER_KEYS \(cluster\.keys\)/);
  assert.match(r.stdout, /THOC_S3_SECRET_KEY \(s3\.secretKey\)/);
  assert.match(r.stdout, /cluster keys\s+1\n/);
  for (const out of [r.stdout, r.stderr]) {
    assert.ok(!out.includes(key), "the cluster key is never printed");
    assert.ok(!out.includes(secret), "the S3 secret is never printed");
  }
  // JSON: the whole resolved config, secrets redacted; --config names the file like `agent --config`.
  const j = await run(["config", "validate", "--config", f, "--json"], env);
  assert.equal(j.code, 0, j.stderr);
  const doc = JSON.parse(j.stdout) as { ok: boolean; file: string; environment: { key: string; env: string }[]; config: { cluster: { keys: unknown }; s3: { secretKey: unknown }; grpcPort: number } };
  assert.equal(doc.ok, true);
  assert.equal(doc.file, f);
  assert.equal(doc.config.cluster.keys, "<redacted>");
  assert.equal(doc.config.s3.secretKey, "<redacted>");
  assert.equal(doc.config.grpcPort, 7410);
  assert.deepEqual(doc.environment.map((e) => e.env).sort(), ["THOC_CLUSTER_KEYS", "THOC_GRPC_PORT", "THOC_S3_ACCESS_KEY", "THOC_S3_SECRET_KEY"]);
  assert.ok(!j.stdout.includes(key) && !j.stdout.includes(secret));
});

test("bad configs: exit 2 with exactly the agent's message, for the file, the environment and the files it names", async () => {
  const keyFile = path.join(dir, "open.key"), certFile = path.join(dir, "node.crt");
  await writeFile(keyFile, "not really a key\n");
  await chmod(keyFile, 0o644);
  await writeFile(certFile, "not really a certificate\n");
  const cases: { name: string; yaml: string; env: Record<string, string>; expect: RegExp }[] = [
    { name: "unknown-key", yaml: base("u") + "gossip:\n  probeIntervall: 1s\n", env: { THOC_CLUSTER_KEYS: key }, expect: /config: gossip\.probeIntervall: unknown key/ },
    { name: "bad-value", yaml: base("v") + "objectstore:\n  replicas: 3\n  writeQuorum: 1\n  readQuorum: 1\n", env: { THOC_CLUSTER_KEYS: key }, expect: /config: objectstore\.readQuorum: readQuorum \+ writeQuorum must exceed replicas/ },
    { name: "no-key", yaml: base("k"), env: {}, expect: /config: cluster\.keys: a cluster key is required outside --dev/ },
    // The environment is read as the agent reads it: a bad secret is named, never shown.
    { name: "env-secret", yaml: base("s"), env: { THOC_CLUSTER_KEYS: "hunter2-not-a-key" }, expect: /config: THOC_CLUSTER_KEYS: expected a list of base64 32-byte keys .* got <redacted>/ },
    { name: "env-port", yaml: base("p"), env: { THOC_CLUSTER_KEYS: key, THOC_S3_PORT: "7400" }, expect: /config: s3Port: port 7400 is also set for grpcPort/ },
    { name: "yaml", yaml: "name: [unclosed\n", env: { THOC_CLUSTER_KEYS: key }, expect: /config: --config: .* is not valid YAML/ },
    // Found only by reading the files the config names: the agent does it at start, before binding anything.
    { name: "open-key", yaml: base("t") + `tls:\n  certFile: ${certFile}\n  keyFile: ${keyFile}\n  caFile: ${certFile}\n`, env: { THOC_CLUSTER_KEYS: key }, expect: /config: tls\.keyFile: .*open\.key is a private key readable by group or others \(mode 0644\): run chmod 600/ },
  ];
  for (const c of cases) {
    const f = await configFile(c.name, c.yaml);
    const [v, a] = await Promise.all([run(["config", "validate", f], c.env), run(["agent", "--config", f], c.env)]);
    assert.equal(v.code, 2, `${c.name}: ${v.stdout}${v.stderr}`);
    assert.equal(v.stdout, "", c.name);
    assert.match(v.stderr, c.expect, c.name);
    assert.equal(v.stderr.split("\n").filter(Boolean).length, 1, `${c.name}: one line`);
    assert.equal(a.code, 2, `${c.name}: the agent refuses it too: ${a.stderr}`);
    assert.equal(v.stderr, a.stderr, `${c.name}: the agent's words exactly`);
    assert.ok(!v.stderr.includes("hunter2") && !v.stderr.includes(key), `${c.name}: no secret`);
  }
});

test("no FILE: the default /etc/thoc/node.yaml when it exists, else defaults and the environment, said so", async () => {
  const r = await run(["config", "validate", "-o", "wide"], { THOC_CLUSTER_KEYS: key, THOC_BIND: "127.0.0.1", THOC_DATA_DIR: path.join(dir, "d") });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /file\s+(\/etc\/thoc\/node\.yaml|none \(\/etc\/thoc\/node\.yaml does not exist: defaults and the environment only\))\n/);
  const both = await run(["config", "validate", "a.yaml", "--config", "b.yaml"]);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /FILE a\.yaml and --config b\.yaml name different files/);
});
