/**
 * Agents that serve their gRPC API with TLS (tls.certFile, as every agent off
 * loopback must) also dial their peers with TLS: the ring exchange, quorum
 * reads and writes and the S3 key table all cross between three production-mode
 * agents whose gRPC ports refuse plaintext. Before this, peers always dialled
 * plaintext and replication failed in exactly the documented production setup.
 * Certificates: a test CA, one node certificate (O=thoc, OU=node: what makes
 * a caller a peer) with every agent's IP, and an admin operator certificate
 * for the CLI, which dials the gRPC port with it rather than the local socket.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { randomBytes } from "node:crypto";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import * as s3 from "@aws-sdk/client-s3";
import { Cluster, loopbackBlock, runCli } from "./harness.js";
import { S3_ENV, getText, metric, s3client, waitRing } from "./objectstore-util.js";

let cluster: Cluster;

/** A test CA (ECDSA P-256), one node certificate for server and client use, valid for every agent's IP, and an admin's client certificate. */
async function makeCerts(dir: string, ips: string[]): Promise<{ ca: string; cert: string; key: string; adminCert: string; adminKey: string }> {
  const f = (n: string) => path.join(dir, n);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  const openssl = (...a: string[]) => execFileSync("openssl", a, { stdio: "ignore" });
  openssl("req", "-x509", ...ec, "-keyout", f("ca.key"), "-out", f("ca.crt"), "-days", "2", "-subj", "/CN=thoc test CA");
  openssl("req", ...ec, "-keyout", f("node.key"), "-out", f("node.csr"), "-subj", "/CN=tls-test-node/O=thoc/OU=node");
  await writeFile(f("san.ext"), `subjectAltName=${ips.map((ip) => `IP:${ip}`).join(",")}\nextendedKeyUsage=serverAuth,clientAuth\n`);
  openssl("x509", "-req", "-in", f("node.csr"), "-CA", f("ca.crt"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f("node.crt"), "-days", "2", "-extfile", f("san.ext"));
  openssl("req", ...ec, "-keyout", f("admin.key"), "-out", f("admin.csr"), "-subj", "/CN=tls-test-admin/O=thoc/OU=admin");
  await writeFile(f("client.ext"), "extendedKeyUsage=clientAuth\n");
  openssl("x509", "-req", "-in", f("admin.csr"), "-CA", f("ca.crt"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f("admin.crt"), "-days", "2", "-extfile", f("client.ext"));
  return { ca: f("ca.crt"), cert: f("node.crt"), key: f("node.key"), adminCert: f("admin.crt"), adminKey: f("admin.key") };
}

before(async () => {
  const root = await mkdtemp(path.join(tmpdir(), "thoc-tls-"));
  const block = loopbackBlock();
  const c = await makeCerts(root, [2, 3, 4].map((i) => `${block}.${i}`));
  // The CLI (and so the harness's cli()) verifies the agents against the test CA and presents the admin certificate.
  Object.assign(process.env, { THOC_TLS_CA: c.ca, THOC_TLS_CERT: c.adminCert, THOC_TLS_KEY: c.adminKey });
  cluster = new Cluster(root, block, { dev: false, cliOverTcp: true, env: { ...S3_ENV, THOC_TLS_CERT_FILE: c.cert, THOC_TLS_KEY_FILE: c.key, THOC_TLS_CA_FILE: c.ca } });
  for (let i = 0; i < 3; i++) cluster.add();
  await Promise.all(cluster.agents.map((a) => a.start()));
  await waitRing(cluster.agents, ["n1", "n2", "n3"]);
});
after(async () => cluster?.stop());

test("three TLS agents replicate over TLS: ring, quorum writes and reads, S3 keys; plaintext is refused", async () => {
  const [a, b, c] = cluster.agents as [typeof cluster.agents[0], typeof cluster.agents[0], typeof cluster.agents[0]];
  // The gRPC port speaks TLS only: a plaintext client cannot reach it.
  const plain = await runCli(["--addr", a.grpcAddress, "--timeout", "3000", "status"], 10_000, { THOC_TLS_CA: "", THOC_TLS_CERT: "", THOC_TLS_KEY: "" });
  assert.equal(plain.code, 1, plain.stdout);
  // TLS without a client certificate reaches the agent but not the API.
  const anon = await runCli(["--addr", a.grpcAddress, "--timeout", "3000", "status"], 10_000, { THOC_TLS_CERT: "", THOC_TLS_KEY: "" });
  assert.equal(anon.code, 1);
  assert.match(anon.stderr, /not authenticated/, anon.stderr);
  const ring = JSON.parse((await b.cli(["ring", "--json"])).stdout) as { replicas: number; writeQuorum: number };
  assert.deepEqual([ring.replicas, ring.writeQuorum], [3, 2], "a full ring: the nodes exchanged it over TLS");

  await s3client(a).send(new s3.CreateBucketCommand({ Bucket: "tls" }));
  const body = randomBytes(3 << 20);
  await s3client(a).send(new s3.PutObjectCommand({ Bucket: "tls", Key: "big", Body: body }));
  for (const x of cluster.agents) {
    const got = await s3client(x).send(new s3.GetObjectCommand({ Bucket: "tls", Key: "big" }));
    assert.ok(Buffer.from(await got.Body!.transformToByteArray()).equals(body), `read through ${x.name}`);
  }
  // Stop one node: W=2 and R=2 now need the two others to talk to each other, over TLS.
  await a.kill("SIGKILL");
  await s3client(b).send(new s3.PutObjectCommand({ Bucket: "tls", Key: "two", Body: "written with one node down" }));
  assert.equal(await getText(s3client(c), "tls", "two"), "written with one node down");
  // The S3 key table (secrets) crosses between nodes only over TLS.
  const made = await b.cli(["s3", "key", "create", "--owner", "root", "--json"]);
  assert.equal(made.code, 0, made.stderr);
  const { accessKeyId, secretKey } = JSON.parse(made.stdout) as { accessKeyId: string; secretKey: string };
  assert.equal(await getText(s3client(c, accessKeyId, secretKey), "tls", "two"), "written with one node down");
});

test("replica bodies cross on the bulk data path, inside TLS: the replicas count the bytes; a plaintext or certificate-less bulk connection gets nothing", async () => {
  const [, b, c] = cluster.agents as [typeof cluster.agents[0], typeof cluster.agents[0], typeof cluster.agents[0]];
  const body = randomBytes(2 << 20);
  const before = await metric(c, 'thoc_objectstore_bulk_bytes_total{op="put"}');
  await s3client(b).send(new s3.PutObjectCommand({ Bucket: "tls", Key: "bulk", Body: body }));
  assert.ok(await metric(c, 'thoc_objectstore_bulk_bytes_total{op="put"}') - before >= body.length, "n3 received the body over the bulk path");
  const got = await s3client(c).send(new s3.GetObjectCommand({ Bucket: "tls", Key: "bulk" }));
  assert.ok(Buffer.from(await got.Body!.transformToByteArray()).equals(body));
  const [host, port] = [b.bind, 7400];
  const preface = Buffer.from("THOC-BULK/1\n");
  // Plaintext HTTP after the preface, on a port that speaks TLS: no answer, the connection is dropped.
  const plain = await new Promise<string>((resolve) => {
    const s = net.connect(port, host, () => s.write(Buffer.concat([preface, Buffer.from(`GET /replica HTTP/1.1\r\nHost: ${host}\r\n\r\n`)])));
    let text = "";
    s.on("data", (d: Buffer) => { text += d.toString("latin1"); });
    s.on("close", () => resolve(text));
    s.on("error", () => {});
    s.setTimeout(5000, () => s.destroy());
  });
  assert.doesNotMatch(plain, /HTTP\/1\.1/, "no HTTP answer in plaintext");
  // TLS that trusts the CA but presents no client certificate: refused at the handshake, no HTTP answer.
  const anon = await new Promise<string>((resolve) => {
    const raw = net.connect(port, host, () => raw.write(preface));
    const t = tls.connect({ socket: raw, host, ca: readFileSync(process.env.THOC_TLS_CA!) }, () => t.write(`GET /replica HTTP/1.1\r\nHost: ${host}\r\n\r\n`));
    let text = "";
    t.on("data", (d: Buffer) => { text += d.toString("latin1"); });
    t.on("close", () => resolve(text));
    t.on("error", () => resolve(text));
    t.setTimeout(5000, () => t.destroy());
  });
  assert.doesNotMatch(anon, /HTTP\/1\.1 200/, "no body for a caller without a node certificate");
  assert.ok(await metric(c, 'thoc_objectstore_bulk_requests_total{op="put",outcome="ok"}') >= 1);
});
