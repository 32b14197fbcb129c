import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { DEV_CLUSTER_KEY, listOptions, loadConfig, redacted } from "./index.js";

const KEY = "a".repeat(43) + "=";
const noFile = null;

async function yamlFile(text: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-cfg-"));
  const f = path.join(dir, "node.yaml");
  await writeFile(f, text);
  return f;
}

test("defaults: lan preset, documented ports, loopback bind allowed without TLS", () => {
  const c = loadConfig({ file: noFile, env: { THOC_CLUSTER_KEYS: KEY, THOC_BIND: "127.0.0.1" } });
  assert.equal(c.grpcPort, 7400);
  assert.equal(c.httpPort, 7401);
  assert.equal(c.s3Port, 7480);
  assert.equal(c.gossipPort, 7946);
  assert.equal(c.gossip.probeInterval, 1000);
  assert.equal(c.preset, "lan");
  assert.equal(c.sources["bind"], "env");
});

test("precedence: flag > env > file > default", async () => {
  const f = await yamlFile("grpcPort: 1000\nhttpPort: 1001\ns3Port: 1002\ncluster:\n  keys: [" + KEY + "]\nbind: 127.0.0.1\n");
  const c = loadConfig({ file: f, env: { THOC_HTTP_PORT: "2001", THOC_S3_PORT: "2002" }, flags: { "--s3-port": "3002" } });
  assert.equal(c.grpcPort, 1000);
  assert.equal(c.httpPort, 2001);
  assert.equal(c.s3Port, 3002);
  assert.deepEqual([c.sources.grpcPort, c.sources.httpPort, c.sources.s3Port], ["file", "env", "flag"]);
});

test("--dev: loopback, test hypervisor, dev key, ./.thoc/<name>, local preset", () => {
  const c = loadConfig({ dev: true, file: noFile, env: {}, cwd: "/tmp/x" });
  assert.equal(c.bind, "127.0.0.1");
  assert.equal(c.name, "dev");
  assert.equal(c.dataDir, "/tmp/x/.thoc/dev");
  assert.equal(c.hypervisorUri, "test:///default");
  assert.deepEqual(c.cluster.keys, [DEV_CLUSTER_KEY]);
  assert.equal(c.gossip.probeInterval, 500);
  assert.equal(c.gossip.probeTimeout, 250);
  assert.equal(c.objectstore.antiEntropyInterval, 5000, "local's fast object-store timers");
  assert.equal(c.preset, "local", "the preset named is the one whose timers apply");
  // test: local's values, but faster failure detection.
  const t = loadConfig({ dev: true, file: noFile, env: { THOC_PRESET: "test" }, cwd: "/tmp/x" });
  assert.deepEqual([t.preset, t.gossip.probeInterval, t.gossip.probeTimeout, t.objectstore.antiEntropyInterval], ["test", 200, 100, 5000]);
  const lan = loadConfig({ dev: true, file: noFile, env: {}, flags: { "--preset": "lan" }, cwd: "/tmp/x" });
  assert.deepEqual([lan.gossip.probeInterval, lan.objectstore.antiEntropyInterval], [1000, 600_000]);
  const d = loadConfig({ dev: true, file: noFile, env: {}, flags: { "--bind": "127.0.0.3" }, cwd: "/tmp/x" });
  assert.equal(d.name, "dev-127-0-0-3");
  assert.equal(d.dataDir, "/tmp/x/.thoc/dev-127-0-0-3");
});

test("errors name the key and the expected form", async () => {
  const bad = (fn: () => unknown, re: RegExp) => assert.throws(fn, (e: Error) => re.test(e.message));
  bad(() => loadConfig({ file: noFile, env: { THOC_GOSSIP_PROBE_INTERVAL: "fast", THOC_CLUSTER_KEYS: KEY } }), /config: THOC_GOSSIP_PROBE_INTERVAL: expected a duration/);
  bad(() => loadConfig({ file: noFile, env: { THOC_BIND: "127.0.0.1" } }), /config: cluster\.keys: a cluster key is required outside --dev/);
  bad(() => loadConfig({ file: noFile, env: { THOC_CLUSTER_KEYS: KEY } }), /config: tls\.certFile: the gRPC API on 0\.0\.0\.0 needs TLS/);
  bad(() => loadConfig({ file: noFile, env: { THOC_CLUSTER_KEYS: KEY, THOC_TLS_CERT_FILE: "/x.crt", THOC_TLS_KEY_FILE: "/x.key" } }), /config: tls\.caFile: tls\.certFile needs tls\.caFile/);
  bad(() => loadConfig({ dev: true, file: noFile, env: { THOC_CLUSTER_KEYS: "short" } }), /config: THOC_CLUSTER_KEYS: expected a list of base64 32-byte keys \(thoc-node keygen\), got <redacted>/);
  bad(() => loadConfig({ dev: true, file: noFile, env: {}, flags: { "--grpc-port": "7401" } }), /config: httpPort: port 7401 is also set for grpcPort/);
  bad(() => loadConfig({ dev: true, file: noFile, env: {}, flags: { "--gossip-port": "7480" } }), /config: gossipPort: port 7480 is also set for s3Port/);
  bad(() => loadConfig({ dev: true, file: noFile, env: { THOC_VM_VNC_PORT: "7946" } }), /config: vm\.vncPort: port 7946 is also set for gossipPort/);
  bad(() => loadConfig({ dev: true, file: noFile, env: {}, flags: { "--bind": "0.0.0.0" } }), /config: bind: --dev .* binds only loopback/);
  bad(() => loadConfig({ dev: true, file: noFile, env: {}, flags: { "--bind": "abc" } }), /config: --bind: expected an IP address/);
  bad(() => loadConfig({ dev: true, file: noFile, env: {}, flags: { "--join": ["127.0.0.1:99999"] } }), /config: --join: expected a list of HOST:PORT with a port from 1 to 65535/);
  bad(() => loadConfig({ dev: true, file: noFile, env: {}, flags: { "--data-dir": "" } }), /config: --data-dir: expected a directory path, got ""/);
  bad(() => loadConfig({ dev: true, file: noFile, env: {}, flags: { "--data-dir": "/sys/x" } }), /config: dataDir: \/sys\/x is under \/sys/);
  bad(() => loadConfig({ dev: true, file: noFile, env: {}, flags: { "--preset": "wan" } }), /config: --preset: expected one of lan, local, test, got "wan"/);
  bad(() => loadConfig({ dev: true, file: noFile, env: {}, flags: { "--name": "bad name" } }), /config: --name: expected 1-63 letters/);
  const [f1, f2, f3] = [await yamlFile("nope: 1\n"), await yamlFile("gossip: 5\n"), await yamlFile("a: [\n")];
  bad(() => loadConfig({ dev: true, file: f1, env: {} }), /config: nope: unknown key/);
  bad(() => loadConfig({ dev: true, file: f2, env: {} }), /config: gossip: expected a map/);
  bad(() => loadConfig({ dev: true, file: f3, env: {} }), /not valid YAML/);
  bad(() => loadConfig({ dev: true, file: "/nonexistent/x.yaml", env: {} }), /config: --config: cannot read \/nonexistent\/x\.yaml/);
});

test("durations and lists parse the documented forms", () => {
  const c = loadConfig({ dev: true, file: noFile, env: { THOC_GOSSIP_PROBE_INTERVAL: "1.5s", THOC_OBJECTSTORE_PEER_TIMEOUT: "2m" }, flags: { "--join": ["10.0.0.1", "10.0.0.2:8000"] } });
  assert.equal(c.gossip.probeInterval, 1500);
  assert.equal(c.objectstore.peerTimeout, 120_000);
  assert.deepEqual(c.join, ["10.0.0.1:7946", "10.0.0.2:8000"]);
});

test("redacted() hides every secret; every option documents itself", () => {
  const c = loadConfig({ dev: true, file: noFile, env: { THOC_S3_ACCESS_KEY: "AK", THOC_S3_SECRET_KEY: "topsecret" } });
  const r = JSON.stringify(redacted(c));
  assert.doesNotMatch(r, /topsecret/);
  assert.doesNotMatch(r, new RegExp(DEV_CLUSTER_KEY.replace(/[+/=]/g, ".")));
  for (const o of listOptions()) {
    assert.ok(o.opt.doc.length > 10, `${o.path} has a reason`);
    assert.match(o.env, /^THOC_[A-Z0-9_]+$/);
  }
});

test("off loopback, a cluster PKI in the data dir (or a join token) is the gRPC API's TLS; a token needs a member to join", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-cfg-pki-"));
  const env = { THOC_CLUSTER_KEYS: KEY, THOC_DATA_DIR: dir };
  assert.throws(() => loadConfig({ file: noFile, env }), /needs TLS: run `thoc-node cluster init`/);
  const token = "thoc1.0123456789abcdef." + "s".repeat(32) + "." + "f".repeat(64);
  const joining = loadConfig({ file: noFile, env, flags: { "--token": token, "--join": ["10.0.0.1"] } });
  assert.equal(joining.pki.joinToken, token);
  assert.equal(redacted(joining).pki && (redacted(joining).pki as { joinToken: string }).joinToken, "<redacted>");
  assert.throws(() => loadConfig({ file: noFile, env, flags: { "--token": token } }), /config: pki\.joinToken: a join token needs a member to join/);
  await mkdir(path.join(dir, "pki"), { recursive: true });
  await writeFile(path.join(dir, "pki", "ca.crt"), "x");
  assert.equal(loadConfig({ file: noFile, env }).bind, "0.0.0.0");
});
