/**
 * Operator authentication and roles end to end (docs/security.md "Roles and
 * authorization", "Local socket"): production-mode agents, real mTLS with
 * certificates in the cluster's subject format, a real unix socket, and the
 * CLI as operators run it.
 *
 *  - agent A serves TLS from tls.* files (test CA): viewer, operator and admin
 *    certificates, a node certificate and no certificate, each against one
 *    method of every class (viewer, operator, admin, peer);
 *  - agent B serves plaintext on loopback: an anonymous TCP caller gets
 *    UNAUTHENTICATED for the API but may make HMAC-signed peer calls;
 *  - both serve a local socket: root is admin; `nobody` is refused by file
 *    mode (0600) and, past it, by its uid; on B the admin group is `nogroup`,
 *    nobody's own group, so nobody is admin there.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { ImageService, KeyService, NodeService, ObjectStoreService } from "../proto/index.js";
import { createClient, credentials, type ChannelCredentials } from "../rpc/index.js";
import type { ThocError } from "../errors/index.js";
import { makeCa, issue, nodeSubject, operatorSubject, type TestCert } from "./certs.js";
import { AgentProcess, CLI, Cluster, REPO_ROOT, loopbackBlock, runCli } from "./harness.js";
import { nodeIdOf } from "./objectstore-util.js";
import { PeerAuth, signer } from "../cluster/index.js";
import type { OutgoingCall } from "../rpc/index.js";

/** Signs replica-protocol calls to `a` as a peer of its cluster (its cluster key), bound to `a`'s node id, as agents sign each other. */
async function peerSigned(a: AgentProcess): Promise<(call: OutgoingCall) => Record<string, string>> {
  return signer(new PeerAuth({ clusterName: "thoc", keys: [a.clusterKey], nodeId: "test-probe" }), await nodeIdOf(a));
}

let cluster: Cluster;
let sockDir = "";
let ca: ReturnType<typeof makeCa>;
const certs: Record<string, TestCert> = {};

before(async () => {
  const root = await mkdtemp(path.join(tmpdir(), "thoc-authz-"));
  // Sockets in a directory `nobody` can traverse (the data dirs are 0750 root).
  sockDir = mkdtempSync(path.join(tmpdir(), "thoc-authz-sock-"));
  chmodSync(sockDir, 0o711);
  const block = loopbackBlock();
  ca = makeCa(root);
  const server = issue(ca, "server", nodeSubject("authz-a"), [`${block}.2`]);
  for (const role of ["viewer", "operator", "admin"]) certs[role] = issue(ca, role, operatorSubject(`alice-${role}`, role));
  certs.node = issue(ca, "peer", nodeSubject("some-node"));
  cluster = new Cluster(root, block, { dev: false, join: false });
  const agent = (i: number, env: Record<string, string>) => new AgentProcess(`n${i}`, `${block}.${i + 1}`, path.join(root, `n${i}`), { dev: false, env, pki: false });
  cluster.agents.push(
    agent(1, { THOC_TLS_CERT_FILE: server.cert, THOC_TLS_KEY_FILE: server.key, THOC_TLS_CA_FILE: ca.cert, THOC_LOCAL_SOCKET: path.join(sockDir, "a.sock") }),
    agent(2, { THOC_LOCAL_SOCKET: path.join(sockDir, "b.sock"), THOC_LOCAL_SOCKET_GROUP: "nogroup" }),
  );
  await Promise.all(cluster.agents.map((x) => x.start()));
});
after(async () => cluster?.stop());

const mtls = (who?: TestCert): ChannelCredentials =>
  credentials.createSsl(readFileSync(ca.cert), who ? readFileSync(who.key) : null, who ? readFileSync(who.cert) : null);

type Outcome = "OK" | "UNAUTHENTICATED" | "PERMISSION_DENIED";

/** One method of each class; "OK" means the call got past authorization (a NOT_FOUND from the handler counts). */
async function tryAll(addr: string, creds: ChannelCredentials, peerMeta?: (call: OutgoingCall) => Record<string, string>): Promise<Record<string, [Outcome, string]>> {
  const opts = { credentials: creds, defaultTimeoutMs: 5000 };
  const node = createClient(NodeService, addr, opts), images = createClient(ImageService, addr, opts);
  const keys = createClient(KeyService, addr, opts), replica = createClient(ObjectStoreService, addr, { ...opts, metadata: peerMeta });
  const outcome = async (p: Promise<unknown>): Promise<[Outcome, string]> => {
    try { await p; return ["OK", ""]; } catch (err) {
      const e = err as ThocError;
      if (e.code === "unauthenticated") return ["UNAUTHENTICATED", e.message];
      if (e.code === "permission_denied") return ["PERMISSION_DENIED", e.message];
      if (e.code === "not_found") return ["OK", e.message];
      throw err;
    }
  };
  try {
    return {
      viewer: await outcome(node.getNode({})),
      operator: await outcome(images.deleteImage({ name: "no-such-image" })),
      admin: await outcome(keys.listKeys({})),
      peer: await outcome(replica.getRing({})),
    };
  } finally {
    for (const c of [node, images, keys, replica]) c.close();
  }
}

test("over mTLS each role reaches its methods and no further; no certificate is UNAUTHENTICATED; node certificates only reach peer methods", async () => {
  const a = cluster.agents[0]!;
  const signed = await peerSigned(a);
  const got: Record<string, Record<string, Outcome>> = {};
  const msgs: Record<string, Record<string, string>> = {};
  for (const who of ["none", "viewer", "operator", "admin", "node"]) {
    const r = await tryAll(a.grpcAddress, mtls(certs[who]), signed);
    got[who] = Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v[0]]));
    msgs[who] = Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v[1]]));
  }
  const U = "UNAUTHENTICATED", D = "PERMISSION_DENIED";
  assert.deepEqual(got, {
    none: { viewer: U, operator: U, admin: U, peer: U },
    viewer: { viewer: "OK", operator: D, admin: D, peer: D },
    operator: { viewer: "OK", operator: "OK", admin: D, peer: D },
    admin: { viewer: "OK", operator: "OK", admin: "OK", peer: D },
    node: { viewer: D, operator: D, admin: D, peer: "OK" },
  });
  // The messages say what is needed, what the caller has, and how to get credentials.
  assert.match(msgs.viewer!.operator!, /DeleteImage needs role operator; operator alice-viewer \(viewer, serial [0-9a-f]+\) has role viewer/);
  assert.match(msgs.operator!.admin!, /ListKeys needs role admin; .* has role operator/);
  assert.match(msgs.none!.viewer!, /needs role viewer .*thoc-node cert issue NAME --role viewer.*local socket/);
  assert.match(msgs.node!.viewer!, /node certificate, which is not an operator credential/);
  assert.match(msgs.admin!.peer!, /node-to-node method/);
});

test("the CLI: certificates from flags, THOC_TLS_* or the profile file; global options after the command; clear refusals", async () => {
  const a = cluster.agents[0]!;
  const env = { THOC_TLS_CA: "", THOC_TLS_CERT: "", THOC_TLS_KEY: "", THOC_ADDR: "", THOC_PROFILE: "" };
  // Flags after the subcommand.
  let r = await runCli(["status", "--json", "--addr", a.grpcAddress, "--tls-ca", ca.cert, "--tls-cert", certs.viewer!.cert, "--tls-key", certs.viewer!.key], 20_000, env);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).name, "n1");
  // Environment.
  r = await runCli(["s3", "key", "list", "--addr", a.grpcAddress], 20_000, { ...env, THOC_TLS_CA: ca.cert, THOC_TLS_CERT: certs.viewer!.cert, THOC_TLS_KEY: certs.viewer!.key });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^thoc-node: \/thoc\.node\.v1\.KeyService\/ListKeys needs role admin; operator alice-viewer .* has role viewer .*cert issue/m);
  // The profile file (relative certificate paths are relative to it).
  const profile = path.join(ca.dir, "profile.json");
  writeFileSync(profile, JSON.stringify({ addr: a.grpcAddress, tlsCa: "ca.crt", tlsCert: "admin.crt", tlsKey: "admin.key" }));
  r = await runCli(["s3", "key", "list", "--json"], 20_000, { THOC_PROFILE: profile });
  assert.equal(r.code, 0, r.stderr);
  // An empty THOC_TLS_* means "none" and beats the profile: plaintext to a TLS port fails.
  r = await runCli(["s3", "key", "list", "--json", "--timeout", "2000"], 20_000, { ...env, THOC_PROFILE: profile });
  assert.equal(r.code, 1);
  // No certificate: UNAUTHENTICATED, and the message says how to get credentials.
  r = await runCli(["--addr", a.grpcAddress, "--tls-ca", ca.cert, "status"], 20_000, env);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /not authenticated by the agent at .*: .*thoc-node cert issue/);
  // A broken profile is named.
  writeFileSync(profile, "{addr:");
  r = await runCli(["status"], 20_000, { ...env, THOC_PROFILE: profile });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /profile .*profile\.json: not JSON/);
});

test("plaintext loopback agent: anonymous TCP callers are UNAUTHENTICATED; HMAC-signed peer calls still work", async () => {
  const b = cluster.agents[1]!;
  const r = await tryAll(b.grpcAddress, credentials.createInsecure(), await peerSigned(b));
  assert.deepEqual(Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v[0]])), {
    viewer: "UNAUTHENTICATED", operator: "UNAUTHENTICATED", admin: "UNAUTHENTICATED", peer: "OK",
  });
  const cli = await runCli(["status", "--addr", b.grpcAddress], 20_000, { THOC_TLS_CA: "", THOC_TLS_CERT: "", THOC_TLS_KEY: "" });
  assert.equal(cli.code, 1);
  assert.match(cli.stderr, /not authenticated/);
});

/** The CLI as uid `nobody`. */
function asNobody(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const p = spawnSync("runuser", ["-u", "nobody", "--", process.execPath, CLI, ...args], { cwd: REPO_ROOT, encoding: "utf8", timeout: 20_000, env: { ...process.env, THOC_ADDR: "", THOC_PROFILE: "" } });
  return { code: p.status, stdout: p.stdout, stderr: p.stderr };
}

test("local socket: root is admin; another uid is refused by the file mode and, past it, by its uid; a member of the admin group is admin", async () => {
  const aSock = path.join(sockDir, "a.sock"), bSock = path.join(sockDir, "b.sock");
  // No group `thoc` on this host: A's socket is root's only. B's admin group exists (nogroup): 0660 with it.
  assert.equal(statSync(aSock).mode & 0o777, 0o600);
  const bs = statSync(bSock);
  assert.equal(bs.mode & 0o777, 0o660);
  assert.equal(bs.gid, 65534);

  let r = await runCli(["--socket", aSock, "s3", "key", "list", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  r = await runCli(["s3", "key", "list", "--json", "--socket", bSock]);
  assert.equal(r.code, 0, r.stderr);

  let n = asNobody(["--socket", aSock, "status"]);
  assert.equal(n.code, 1);
  assert.match(n.stderr, /cannot open the local socket .*a\.sock: permission denied/);
  // Past the file mode, the agent itself refuses the uid (SO_PEERCRED).
  chmodSync(aSock, 0o666);
  n = asNobody(["--socket", aSock, "status"]);
  assert.equal(n.code, 1);
  assert.match(n.stderr, /GetNode needs role viewer; local uid 65534 gid 65534 pid \d+ has no role/);

  // nobody's primary group is nogroup, B's admin group.
  n = asNobody(["--socket", bSock, "s3", "key", "list", "--json"]);
  assert.equal(n.code, 0, n.stderr);
});
