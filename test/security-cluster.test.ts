/**
 * A cluster secured the documented way and nothing else: the first data dir
 * gets `thoc-node cluster init`, every other node starts with
 * `thoc-node agent --join ... --token ...` and a token from `thoc-node
 * cluster token create` (test/harness.ts production mode runs exactly these
 * CLI commands). gRPC is mutual TLS on loopback too, so every replica call
 * below crossed mTLS:
 *  - S3 replication (PUT through n1, read through n3) and repair (n3 stopped,
 *    writes, n3 back: n3's own replicas catch up);
 *  - a plaintext client and a TLS client without a certificate are refused,
 *    even with the cluster key's MAC on a peer method;
 *  - a used token and a token naming another CA are refused with clear
 *    messages and nothing stored;
 *  - a node certificate renews itself (short pki.nodeCertTtl): new serial,
 *    thoc_cert_expiry_seconds{cert="node"} back up;
 *  - after `thoc-node node remove`, that node's certificate is refused by the others.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import * as s3 from "@aws-sdk/client-s3";
import type { DescService } from "@bufbuild/protobuf";
import { PEER_AUTH_HEADER, PeerAuth, methodPath, presentedChain } from "../cluster/index.js";
import { ObjectStoreService, PkiService } from "../proto/index.js";
import { createClient, credentials } from "../rpc/index.js";
import { AgentProcess, runCli, sleep, startCluster, waitFor, type Cluster } from "./harness.js";
import { S3_ENV, getText, s3client, waitRing } from "./objectstore-util.js";

let cluster: Cluster;
let n1: AgentProcess, n2: AgentProcess, n3: AgentProcess;
const extra: AgentProcess[] = [];

before(async () => {
  cluster = await startCluster(3, { dev: false, env: { ...S3_ENV } });
  [n1, n2, n3] = cluster.agents as [AgentProcess, AgentProcess, AgentProcess];
  await waitRing(cluster.agents, ["n1", "n2", "n3"]);
});
after(async () => {
  await Promise.all(extra.map((a) => a.kill("SIGKILL")));
  await cluster?.stop();
});

/** Another production-mode agent of this cluster at 127.X.Y.(i+2), joining with a token from n1 unless told otherwise. */
function another(name: string, i: number, env: Record<string, string> = {}, token?: string): AgentProcess {
  const a = new AgentProcess(name, `${cluster.block}.${i + 2}`, path.join(cluster.root, name), {
    dev: false, clusterKey: n1.clusterKey, env: { ...S3_ENV, ...env }, join: [n1.gossipAddress], pki: { tokenFrom: n1 },
    ...(token ? { args: ["--join", n1.gossipAddress, "--token", token] } : {}),
  });
  extra.push(a);
  return a;
}

/** The agent's exit code; fails (and stops it) if it is still running after ms: a refused join must end the agent. */
async function exitWithin(a: AgentProcess, ms = 30_000): Promise<number | null> {
  const r = await Promise.race([a.waitExit(), sleep(ms).then(() => "running" as const)]);
  if (r === "running") {
    await a.kill("SIGKILL");
    assert.fail(`${a.name} still runs ${ms} ms after start: its join was not refused`);
  }
  return r;
}

function certNodeId(a: AgentProcess): string {
  return /CN=([^\n,]+)/.exec(new X509Certificate(readFileSync(path.join(a.dataDir, "pki", "node.crt"))).subject)![1]!;
}

/** A client of a peer service on `target` presenting node `from`'s certificate, with a valid MAC as that node. */
function asNode(from: AgentProcess, target: AgentProcess) {
  const pki = path.join(from.dataDir, "pki");
  const cert = readFileSync(path.join(pki, "node.crt"));
  const nodeId = /CN=([^\n,]+)/.exec(new X509Certificate(cert).subject)![1]!;
  const targetId = certNodeId(target);
  const auth = new PeerAuth({ clusterName: "thoc", keys: [from.clusterKey], nodeId });
  // Signed like a peer's call: bound to the target node and the request's bytes.
  const client = createClient(ObjectStoreService, target.grpcAddress, {
    credentials: credentials.createSsl(readFileSync(path.join(pki, "ca.crt")), readFileSync(path.join(pki, "node.key")), cert), defaultTimeoutMs: 5000,
    metadata: (call) => ({ [PEER_AUTH_HEADER]: auth.sign(call.path, targetId, call.request) }),
  });
  return { client, nodeId };
}

test("bootstrapped only by the CLI: every node serves mTLS from the cluster PKI; S3 replicates across it (PUT on n1, GET on n3)", async () => {
  for (const a of cluster.agents) {
    assert.ok(a.logs().some((l) => l.msg === "gRPC: TLS from the cluster PKI (mutual TLS between nodes)"), `${a.name} serves the cluster PKI`);
    assert.equal(existsSync(path.join(a.dataDir, "pki", "ca.key")), a === n1, `only n1 holds the CA key (${a.name})`);
  }
  assert.ok(n2.logs().some((l) => l.msg === "joined the cluster PKI: node certificate stored"), "n2 joined with its token");
  await s3client(n1).send(new s3.CreateBucketCommand({ Bucket: "sec" }));
  await s3client(n1).send(new s3.PutObjectCommand({ Bucket: "sec", Key: "a", Body: "over mTLS" }));
  assert.equal(await getText(s3client(n3), "sec", "a"), "over mTLS");
});

/** A served method's call count (ended calls, any status) from an agent's /metrics. */
async function served(a: AgentProcess, method: string): Promise<number> {
  const text = await (await fetch(`${a.httpUrl}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(new RegExp(`^thoc_grpc_requests_total\\{method="thoc\\.node\\.v1\\.${method}",code="[A-Z_]+"\\} (\\d+)`, "gm"))) n += Number(m[1]);
  return n;
}

test("idle peer traffic over mTLS: the leader's heartbeats ride one stream per peer, sync rounds are one SyncDigests call", async () => {
  const leaders = async () => (await Promise.all(cluster.agents.map(async (a) => /^thoc_scheduler_is_leader 1$/m.test(await (await fetch(`${a.httpUrl}/metrics`)).text())))).filter(Boolean).length;
  await waitFor("one scheduler leader", async () => (await leaders()) === 1, 30_000);
  const methods = ["SchedulerService/Heartbeat", "ObjectStoreService/SyncDigests", "ObjectStoreService/SyncTable", "ObjectStoreService/MergeRing"];
  const count = async () => Object.fromEntries(await Promise.all(methods.map(async (m) => [m, (await Promise.all(cluster.agents.map((a) => served(a, m)))).reduce((x, y) => x + y, 0)] as const)));
  const c0 = await count();
  await sleep(12_000);
  const c1 = await count();
  const d = Object.fromEntries(methods.map((m) => [m, c1[m]! - c0[m]!]));
  // 12 s at the local preset's 100 ms heartbeat would be ~240 unary calls; on streams the beats end no call.
  assert.equal(d["SchedulerService/Heartbeat"], 0, `unary heartbeats in 12 s: ${JSON.stringify(d)}`);
  assert.equal(await leaders(), 1, "the leader kept its lease on streamed heartbeats");
  // Every node syncs with a random peer every 2 s (local preset): ~18 rounds, most between nodes that agree.
  // The ring did not change, so no round sent it (each round used to: one MergeRing per round). SyncTable is
  // not bounded here: table writes (a node's host entry follows its free disk) push entries to every node.
  assert.ok(d["ObjectStoreService/SyncDigests"]! >= 4, `sync rounds ran: ${JSON.stringify(d)}`);
  assert.equal(d["ObjectStoreService/MergeRing"], 0, `an unchanged ring is not exchanged: ${JSON.stringify(d)}`);
  const equal = (await Promise.all(cluster.agents.map(async (a) => Number(/^thoc_objectstore_sync_rounds_total\{result="equal"\} (\d+)/m.exec(await (await fetch(`${a.httpUrl}/metrics`)).text())?.[1] ?? 0)))).reduce((x, y) => x + y, 0);
  assert.ok(equal >= 3, `rounds between agreeing nodes counted as equal: ${equal}`);
});

test("a plaintext client and a TLS client without a certificate are refused, even with the cluster key's MAC", async () => {
  const plain = createClient(PkiService, n1.grpcAddress, { credentials: credentials.createInsecure(), defaultTimeoutMs: 3000 });
  await assert.rejects(plain.getCa({}), (e: { code?: string }) => e.code === "unavailable");
  plain.close();

  const ca = readFileSync(n1.clientTls!.ca);
  const anon = createClient(ObjectStoreService, n1.grpcAddress, { credentials: credentials.createSsl(ca), defaultTimeoutMs: 3000 });
  const auth = new PeerAuth({ clusterName: "thoc", keys: [n1.clusterKey], nodeId: "stolen-key" });
  const signedAnon = createClient(ObjectStoreService, n1.grpcAddress, {
    credentials: credentials.createSsl(ca), defaultTimeoutMs: 3000,
    metadata: (call) => ({ [PEER_AUTH_HEADER]: auth.sign(call.path, certNodeId(n1), call.request) }),
  });
  await assert.rejects(signedAnon.headReplica({ bucket: "sec", key: "a" }),
    (e: { code?: string; message: string }) => e.code === "unauthenticated" && /node certificate/.test(e.message));
  anon.close();
  signedAnon.close();
  // The public part answers over TLS without a certificate; the admin part does not.
  const pki = createClient(PkiService, n1.grpcAddress, { credentials: credentials.createSsl(ca), defaultTimeoutMs: 3000 });
  assert.match((await pki.getCa({})).caCertificate, /BEGIN CERTIFICATE/);
  await assert.rejects(pki.createJoinToken({}), (e: { code?: string }) => e.code === "unauthenticated");
  pki.close();
});

test("cert issue: the CLI makes the key, writes NAME.crt/NAME.key 0600 and ca.crt; the certificate works; a non-admin cannot issue", async () => {
  const out = path.join(cluster.root, "operators");
  // Only the CA holder issues; another member says where to go.
  const elsewhere = await n2.cli(["cert", "issue", "alice", "--role", "operator", "--out", out]);
  assert.equal(elsewhere.code, 1);
  assert.match(elsewhere.stderr, /does not hold the cluster CA key: run this against the node where `thoc-node cluster init` ran/);
  const r = await n1.cli(["cert", "issue", "alice", "--role", "operator", "--ttl", "2d", "--out", out, "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const files = JSON.parse(r.stdout) as { cert: string; key: string; ca: string; serial: string };
  for (const f of [files.cert, files.key]) assert.equal(statSync(f).mode & 0o777, 0o600, `${f} mode`);
  const x = new X509Certificate(readFileSync(files.cert));
  assert.match(x.subject, /CN=alice/);
  assert.match(x.subject, /OU=operator/);
  assert.ok(x.verify(new X509Certificate(readFileSync(files.ca)).publicKey), "signed by the cluster CA");
  assert.equal(x.serialNumber.toLowerCase(), files.serial);
  const asAlice = { THOC_TLS_CA: files.ca, THOC_TLS_CERT: files.cert, THOC_TLS_KEY: files.key };
  const st = await runCli(["--addr", n3.grpcAddress, "status", "--json"], 20_000, asAlice);
  assert.equal(st.code, 0, st.stderr);
  const denied = await runCli(["--addr", n1.grpcAddress, "cert", "issue", "mallory", "--role", "admin", "--out", out], 20_000, asAlice);
  assert.equal(denied.code, 1);
  assert.match(denied.stderr, /needs role admin; operator alice \(operator, serial [0-9a-f]+\) has role operator/);
  assert.ok(!existsSync(path.join(out, "mallory.crt")), "nothing written when refused");
});

test("cert revoke: an admin takes back an operator certificate by serial, and every member refuses it; others keep working", async () => {
  const out = path.join(cluster.root, "revoke");
  const issued = async (name: string) => {
    const r = await n1.cli(["cert", "issue", name, "--role", "viewer", "--out", out, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const f = JSON.parse(r.stdout) as { cert: string; key: string; ca: string; serial: string };
    return { serial: f.serial, env: { THOC_TLS_CA: f.ca, THOC_TLS_CERT: f.cert, THOC_TLS_KEY: f.key } };
  };
  const bob = await issued("bob"), carol = await issued("carol");
  const status = (a: AgentProcess, env: Record<string, string>) => runCli(["--addr", a.grpcAddress, "status", "--json"], 20_000, env);
  for (const a of [n1, n2, n3]) assert.equal((await status(a, bob.env)).code, 0, `bob works on ${a.name} before`);
  // Bad input changes nothing.
  const bad = await n2.cli(["cert", "revoke", "not-a-serial"]);
  assert.equal(bad.code, 2, "invalid input: exit 2");
  assert.match(bad.stderr, /is not a certificate serial number/);
  // A viewer cannot revoke (not even itself).
  assert.match((await runCli(["--addr", n2.grpcAddress, "cert", "revoke", bob.serial], 20_000, bob.env)).stderr, /needs role admin/);
  // Revoked through n2 (any member, colons and case as a person may type them): refused everywhere.
  const typed = bob.serial.toUpperCase().replace(/(..)(?=.)/g, "$1:");
  const r = await n2.cli(["cert", "revoke", typed, "--reason", "laptop lost", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { serial: string }).serial, bob.serial.replace(/^0+(?=.)/, ""));
  for (const a of [n1, n2, n3]) {
    await waitFor(`${a.name} refuses bob's certificate`, async () => {
      const s = await status(a, bob.env);
      return s.code === 1 && /revoked/.test(s.stderr);
    }, 20_000, 300);
    assert.equal((await status(a, carol.env)).code, 0, `carol still works on ${a.name}`);
  }
});

test("repair over mTLS: writes while n3 is down reach n3's own replicas after it returns", async () => {
  await n3.kill("SIGTERM");
  const keys = Array.from({ length: 8 }, (_, i) => `while-down-${i}`);
  for (const k of keys) await s3client(n1).send(new s3.PutObjectCommand({ Bucket: "sec", Key: k, Body: `body ${k}` }));
  await n3.start();
  // Checked on n3's own store (HeadReplica as node n2: its certificate and its MAC), not through a quorum read.
  const { client } = asNode(n2, n3);
  try {
    await waitFor("n3 holds every key written while it was down", async () => {
      for (const k of keys) {
        const r = await client.headReplica({ bucket: "sec", key: k });
        if (!r.record || r.record.tombstone) return false;
      }
      return true;
    }, 60_000, 500);
  } finally { client.close(); }
  for (const k of keys) assert.equal(await getText(s3client(n3), "sec", k), `body ${k}`);
});

test("join tokens: one use only, and a token naming another CA is refused before anything is stored", async () => {
  const made = await n1.cli(["cluster", "token", "create", "--ttl", "10m", "--json"]);
  assert.equal(made.code, 0, made.stderr);
  const { token } = JSON.parse(made.stdout) as { token: string };
  const first = another("t1", 10, {}, token);
  first.spawn();
  await first.waitReady();
  assert.ok(existsSync(path.join(first.dataDir, "pki", "node.crt")));

  const again = another("t2", 11, {}, token);
  again.spawn();
  assert.notEqual(await exitWithin(again), 0);
  assert.match(again.output, /join token [0-9a-f]{16} was already used/);
  assert.ok(!existsSync(path.join(again.dataDir, "pki")), "nothing stored for a reused token");
  assert.ok(!again.output.includes(token.split(".")[2]!), "the token's secret is not echoed");

  const fresh = JSON.parse((await n1.cli(["cluster", "token", "create", "--json"])).stdout) as { token: string };
  const wrongCa = fresh.token.replace(/\.[0-9a-f]{64}$/, `.${"0".repeat(64)}`);
  const other = another("t3", 12, {}, wrongCa);
  other.spawn();
  assert.notEqual(await exitWithin(other), 0);
  assert.match(other.output, /does not present the CA the join token names/);
  assert.ok(!existsSync(path.join(other.dataDir, "pki")), "nothing stored for a token of another CA");
  await first.kill("SIGKILL");
  const gone = await n1.cli(["node", "remove", "t1"]);
  assert.equal(gone.code, 0, gone.stderr);
});

test("renewal: a short-lived node certificate renews itself through the CA holder (new serial, expiry metric back up)", async () => {
  const n4 = another("n4", 3, { THOC_PKI_NODE_CERT_TTL: "30s" });
  await n4.start();
  const serial = async () => new X509Certificate((await presentedChain(n4.grpcAddress))[0]!).serialNumber;
  const expiry = async () => {
    const text = await (await fetch(`${n4.httpUrl}/metrics`)).text();
    return Number(/^thoc_cert_expiry_seconds\{cert="node"\} (\S+)$/m.exec(text)?.[1]);
  };
  const s0 = await serial();
  const e0 = await expiry();
  assert.ok(e0 > 0 && e0 <= 30, `node certificate expiry ${e0} s`);
  // Renewed once a third of its life (10 s) is left: within about 20 s.
  await waitFor("a new node certificate served", async () => (await serial()) !== s0, 40_000, 500);
  assert.ok(n4.logs().some((l) => l.msg === "node certificate renewed"));
  assert.ok((await expiry()) > 15, "the expiry metric follows the new certificate");
  assert.ok(!existsSync(path.join(n4.dataDir, "pki", "ca.key")), "n4 renewed through the CA holder, holding no CA key");
});

test("a removed node's certificate is refused by every other member", async () => {
  const n4 = extra.find((a) => a.name === "n4")!;
  await waitRing([n1, n2, n3, n4], ["n1", "n2", "n3", "n4"]);
  const call = async (target: AgentProcess) => {
    const { client } = asNode(n4, target);
    try { return await client.headReplica({ bucket: "sec", key: "a" }); } finally { client.close(); }
  };
  // Control: before the removal n4's certificate and MAC are accepted.
  await call(n2);
  await n4.kill("SIGTERM");
  const removed = await n1.cli(["node", "remove", "n4"]);
  assert.equal(removed.code, 0, removed.stderr);
  for (const x of [n1, n2, n3]) {
    await waitFor(`${x.name} refuses n4's certificate`, async () => {
      try { await call(x); return false; } catch (err) {
        const e = err as { code?: string; message: string };
        return e.code === "permission_denied" && /was removed from the cluster/.test(e.message);
      }
    }, 20_000, 300);
  }
});
