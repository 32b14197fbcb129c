/** Certificate files of the agent's TLS listeners: read with errors naming the option, and followed across renewals. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import tls from "node:tls";
import { ThocError } from "../errors/index.js";
import { makeTestCertificates } from "./testutil.js";
import { followTlsPair, readTlsPair } from "./tls.js";

const dir = mkdtempSync(path.join(tmpdir(), "thoc-tls-"));
const sub = (n: string) => { const d = path.join(dir, n); mkdirSync(d); return d; };
const one = makeTestCertificates(sub("one"), ["127.0.0.1"]);
const two = makeTestCertificates(sub("two"), ["127.0.0.1"]);
process.on("exit", () => rmSync(dir, { recursive: true, force: true }));

test("readTlsPair: a missing file or a key that is not the certificate's names the option", () => {
  assert.ok(readTlsPair(one.certFile, one.keyFile, "s3.tls").cert.length > 0);
  assert.throws(() => readTlsPair("/nonexistent.crt", one.keyFile, "s3.tls"),
    (e: ThocError) => e.code === "invalid_argument" && /^config: s3\.tls\.certFile: cannot read \/nonexistent\.crt/.test(e.message) && e.details.key === "s3.tls.certFile");
  assert.throws(() => readTlsPair(one.certFile, two.keyFile, "s3.tls"), (e: ThocError) => e.code === "invalid_argument" && /not a PEM certificate and its private key/.test(e.message));
  assert.throws(() => readTlsPair(one.keyFile, one.keyFile, "tls"), (e: ThocError) => e.code === "invalid_argument" && /tls: /.test(e.message));
  const open = path.join(dir, "open.key");
  copyFileSync(one.keyFile, open);
  chmodSync(open, 0o644);
  assert.throws(() => readTlsPair(one.certFile, open, "s3.tls"), (e: ThocError) => e.details.key === "s3.tls.keyFile" && /readable by group or others.*chmod 600/.test(e.message), "a key others can read");
});

test("followTlsPair: a certificate renewed on disk is served without a restart; a broken one is reported and the old one kept", async () => {
  const live = { certFile: path.join(dir, "live.crt"), keyFile: path.join(dir, "live.key") };
  copyFileSync(one.certFile, live.certFile);
  copyFileSync(one.keyFile, live.keyFile);
  const server = https.createServer(readTlsPair(live.certFile, live.keyFile, "x"), (_q, r) => r.end("ok"));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  const errors: Error[] = [];
  const watch = followTlsPair(live, "x", (p) => server.setSecureContext(p), (e) => errors.push(e), 30);
  const served = () => new Promise<string>((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false }, () => { resolve(s.getPeerX509Certificate()!.fingerprint256); s.end(); });
    s.on("error", reject);
  });
  const fp = (f: string) => new X509Certificate(readFileSync(f)).fingerprint256;
  try {
    assert.equal(await served(), fp(one.certFile));
    copyFileSync(two.keyFile, live.keyFile);
    copyFileSync(two.certFile, live.certFile);
    const until = Date.now() + 3000;
    while ((await served()) !== fp(two.certFile) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    assert.equal(await served(), fp(two.certFile), "the renewed certificate");
    writeFileSync(live.certFile, "not a certificate");
    const until2 = Date.now() + 3000;
    while (errors.length === 0 && Date.now() < until2) await new Promise((r) => setTimeout(r, 20));
    assert.match(errors[0]?.message ?? "", /not a PEM certificate/);
    assert.equal(await served(), fp(two.certFile), "the last good certificate is kept");
  } finally {
    watch.stop();
    await new Promise((r) => server.close(r));
  }
});
