import { test } from "node:test";
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { chmodSync, existsSync, statSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { connect, createServer, type TLSSocket } from "node:tls";
import { callerFromCertificate } from "../rpc/index.js";
import { LocalStore } from "../store/index.js";
import { JoinTokens, parseToken } from "./join-token.js";
import { presentedChain } from "./join.js";
import { certFingerprint, certInfo, initCa, issueNodeCertificate, issueOperatorCertificate, loadCa, makeCsr, pkiPaths, readKeyFile } from "./pki.js";

async function tmp(): Promise<string> {
  return mkdtemp(path.join(tmpdir(), "thoc-pki-"));
}

test("cluster init: CA files with their modes, a second init refused, fingerprint = sha256 of the DER", async () => {
  const dir = await tmp();
  try {
    const p = pkiPaths(dir);
    const ca = await initCa(p, "test");
    assert.equal(statSync(p.dir).mode & 0o777, 0o700);
    assert.equal(statSync(p.caKey).mode & 0o777, 0o600);
    const der = new X509Certificate(ca.certPem).raw;
    assert.equal(ca.fingerprint, certFingerprint(der));
    assert.equal(ca.fingerprint, new X509Certificate(ca.certPem).fingerprint256.replaceAll(":", "").toLowerCase());
    const x = new X509Certificate(ca.certPem);
    assert.ok(x.ca, "basicConstraints CA");
    assert.ok(new Date(x.validTo).getTime() - Date.now() > 9 * 365 * 86_400_000, "about ten years");
    await assert.rejects(initCa(p, "test"), /already holds a cluster CA/);
    const again = await loadCa(p);
    assert.ok(again.key, "the CA holder loads the key");
  } finally { await rm(dir, { recursive: true, force: true }); }
});

test("a node certificate from a CSR: the CA decides the subject, SANs carry the node URI, its IPs and loopback; TLS reads it as that node", async () => {
  const dir = await tmp();
  try {
    const ca = await initCa(pkiPaths(dir), "test");
    // The CSR asks for another name: the CA ignores what the CSR says.
    const { keyPem, csrPem } = await makeCsr("someone-else", "admin");
    const pem = await issueNodeCertificate(ca, { csrPem, nodeId: "node-a", addresses: ["10.1.2.3", "host-a"], ttlMs: 3_600_000 });
    const x = new X509Certificate(pem);
    assert.ok(x.verify(new X509Certificate(ca.certPem).publicKey), "signed by the CA");
    assert.ok(x.checkPrivateKey(await import("node:crypto").then((c) => c.createPrivateKey(keyPem))), "for the CSR's key");
    assert.match(x.subject, /CN=node-a/);
    assert.match(x.subject, /OU=node/);
    assert.ok(x.checkIP("10.1.2.3") && x.checkIP("127.0.0.1") && x.checkHost("host-a") && x.checkHost("localhost"));
    assert.match(x.subjectAltName ?? "", /URI:thoc:\/\/node\/node-a/);
    const life = certInfo(pem).notAfter.getTime() - Date.now();
    assert.ok(life > 3_500_000 && life <= 3_600_000, `ttl honoured: ${life}`);

    // Over a real TLS handshake the server's verified view of it is node node-a (rpc/identity.ts).
    const caller = await handshakeCaller(ca.certPem, pem, keyPem);
    assert.equal(caller.kind, "node");
    assert.equal(caller.kind === "node" && caller.nodeId, "node-a");
  } finally { await rm(dir, { recursive: true, force: true }); }
});

test("operator certificates carry the role; a CSR whose signature does not verify is refused; bad names are refused", async () => {
  const dir = await tmp();
  try {
    const ca = await initCa(pkiPaths(dir), "test");
    const { keyPem, csrPem } = await makeCsr("alice", "viewer");
    const cert = await issueOperatorCertificate(ca, { csrPem, name: "alice", role: "viewer", ttlMs: 60_000 });
    const caller = await handshakeCaller(ca.certPem, cert.toString("pem"), keyPem);
    assert.deepEqual(caller.kind === "operator" && [caller.name, caller.role], ["alice", "viewer"]);

    // Flip one byte in the CSR's signature: the CSR no longer proves possession of its key.
    const der = Buffer.from(csrPem.replace(/-----[^-]+-----/g, "").replace(/\s/g, ""), "base64");
    der[der.length - 5] ^= 0x01;
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`;
    await assert.rejects(issueOperatorCertificate(ca, { csrPem: tampered, name: "alice", role: "viewer", ttlMs: 60_000 }), /signature does not verify|not a PEM/);
    await assert.rejects(issueOperatorCertificate(ca, { csrPem, name: "bob,OU=admin", role: "viewer", ttlMs: 60_000 }), /operator name/);
    await assert.rejects(issueNodeCertificate({ ...ca, key: undefined }, { csrPem, nodeId: "n", addresses: [], ttlMs: 1000 }), /does not hold the cluster CA key/);
  } finally { await rm(dir, { recursive: true, force: true }); }
});

test("a key file readable by group or others is refused, naming the chmod that fixes it", async () => {
  const dir = await tmp();
  try {
    const f = path.join(dir, "node.key");
    writeFileSync(f, "x", { mode: 0o600 });
    assert.equal(readKeyFile(f), "x");
    chmodSync(f, 0o640);
    assert.throws(() => readKeyFile(f), (e: Error) => e.message.includes(`chmod 600 ${f}`) && e.message.includes("group"));
    chmodSync(f, 0o604);
    assert.throws(() => readKeyFile(f), /readable by others/);
  } finally { await rm(dir, { recursive: true, force: true }); }
});

test("join tokens: one-time (two racing uses: exactly one wins), expiry, wrong secret; the store keeps only a hash", async () => {
  const dir = await tmp();
  const store = await LocalStore.open(dir);
  try {
    let now = 1_000_000;
    const tokens = new JoinTokens(store, () => now);
    const fp = "ab".repeat(32);
    const t = await tokens.create(fp, 60_000);
    const parsed = parseToken(t.token);
    assert.equal(parsed.caFingerprint, fp);
    const stored = JSON.stringify(await store.json("pki-join-tokens").get(parsed.id));
    assert.ok(!stored.includes(parsed.secret), "the secret itself is not stored");

    const results = await Promise.allSettled([tokens.consume(parsed, "n1"), tokens.consume(parsed, "n2")]);
    assert.deepEqual(results.map((r) => r.status).sort(), ["fulfilled", "rejected"]);
    await assert.rejects(tokens.consume(parsed, "n3"), /already used/);

    const wrong = { ...parseToken((await tokens.create(fp, 60_000)).token) };
    await assert.rejects(tokens.consume({ ...wrong, secret: "A".repeat(32) }, "n4"), /not known/);
    await tokens.consume(wrong, "n4");

    const old = parseToken((await tokens.create(fp, 60_000)).token);
    now += 60_001;
    await assert.rejects(tokens.consume(old, "n5"), /expired/);
    assert.throws(() => parseToken("thoc1.nope"), (e: Error) => /malformed/.test(e.message) && !e.message.includes("nope"));
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("a joining node reads the CA off an unverified handshake: the presented chain includes the CA whose sha256 the token names", async () => {
  const dir = await tmp();
  try {
    const ca = await initCa(pkiPaths(dir), "test");
    const { keyPem, csrPem } = await makeCsr("x", "node");
    const pem = await issueNodeCertificate(ca, { csrPem, nodeId: "srv", addresses: ["127.0.0.1"], ttlMs: 60_000 });
    const srv = createServer({ cert: `${pem.trim()}\n${ca.certPem.trim()}\n`, key: keyPem, ALPNProtocols: ["h2"] }, (s) => s.end());
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    try {
      const chain = await presentedChain(`127.0.0.1:${(srv.address() as { port: number }).port}`);
      assert.ok(chain.some((d) => certFingerprint(d) === ca.fingerprint), "the CA is in the presented chain");
    } finally { srv.close(); }
  } finally { await rm(dir, { recursive: true, force: true }); }
});

/** The caller a TLS server that verifies against `caPem` (requestCert, not required) sees for a client presenting cert/key. */
async function handshakeCaller(caPem: string, certPem: string, keyPem: string) {
  const dir = await tmp();
  try {
    const p = pkiPaths(dir);
    const ca = await initCa(p, "server");
    const { keyPem: sk, csrPem } = await makeCsr("srv", "node");
    const serverCert = await issueNodeCertificate(ca, { csrPem, nodeId: "srv", addresses: ["127.0.0.1"], ttlMs: 60_000 });
    let seen: ReturnType<typeof callerFromCertificate> | undefined;
    const srv = createServer({ cert: serverCert, key: sk, ca: caPem, requestCert: true, rejectUnauthorized: false }, (s: TLSSocket) => {
      seen = s.authorized ? callerFromCertificate(s.getPeerCertificate()) : { kind: "anonymous", transport: "tls" };
      s.end();
    });
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const port = (srv.address() as { port: number }).port;
    await new Promise<void>((resolve, reject) => {
      const c = connect({ host: "127.0.0.1", port, ca: ca.certPem, cert: certPem, key: keyPem }, () => undefined);
      c.on("error", reject);
      c.on("close", () => resolve());
      c.resume();
    });
    srv.close();
    assert.ok(existsSync(p.caCert));
    return seen!;
  } finally { await rm(dir, { recursive: true, force: true }); }
}
