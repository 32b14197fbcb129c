/**
 * The cluster PKI: one CA per cluster (ECDSA P-256), node certificates and
 * operator certificates, all built with @peculiar/x509 over node's webcrypto
 * (no hand-made ASN.1). The subject says who a certificate is for, in the
 * format rpc/identity.ts reads:
 *
 *   node      CN=<nodeId>  O=thoc  OU=node                  SAN URI thoc://node/<nodeId> + IPs/DNS
 *   operator  CN=<name>    O=thoc  OU=viewer|operator|admin  SAN URI thoc://operator/<name>
 *
 * The CA signs from a CSR, so a private key never leaves the machine that
 * made it; the subject comes from the CA's decision (node id, role), never
 * from what the CSR asks for. Files live under <dataDir>/pki (0700), keys
 * 0600; a key readable by group or others is refused, since a copied node key
 * is a node identity and a copied CA key is the whole cluster.
 */
import { createHash, createPrivateKey, webcrypto, X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync, chmodSync } from "node:fs";
import { isIP } from "node:net";
import path from "node:path";
import type * as X509 from "@peculiar/x509";
import { ThocError } from "../errors/index.js";
import { CERT_ORG, NODE_OU, type Role } from "../rpc/index.js";

type CryptoKey = webcrypto.CryptoKey;

let x509Loading: Promise<typeof X509> | undefined;
/**
 * @peculiar/x509 is loaded on first use (issuing, a CSR, a signature check):
 * with reflect-metadata and tsyringe it costs ~10 MB of RSS and ~140 ms at
 * start, and an agent only reads certificates (node:crypto does that) until
 * it renews or issues one (issue 19).
 */
function lib(): Promise<typeof X509> {
  return (x509Loading ??= (async () => {
    // @peculiar/x509 resolves its algorithm providers through tsyringe, which needs the Reflect metadata API.
    await import("reflect-metadata");
    const x509 = await import("@peculiar/x509");
    x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
    return x509;
  })());
}

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY = 86_400_000;
export const CA_TTL_MS = 3650 * DAY;
export const DEFAULT_OPERATOR_TTL_MS = 30 * DAY;

/** The files of a data dir's cluster PKI. */
export function pkiPaths(dataDir: string) {
  const dir = path.join(dataDir, "pki");
  return {
    dir,
    caCert: path.join(dir, "ca.crt"),
    caKey: path.join(dir, "ca.key"),
    nodeCert: path.join(dir, "node.crt"),
    nodeKey: path.join(dir, "node.key"),
    adminCert: path.join(dir, "admin.crt"),
    adminKey: path.join(dir, "admin.key"),
  };
}

export type PkiPaths = ReturnType<typeof pkiPaths>;

/** sha256 of a certificate's DER, lower-case hex: the CA fingerprint join tokens carry. */
export function certFingerprint(pemOrDer: string | Uint8Array): string {
  const der = typeof pemOrDer === "string" ? new X509Certificate(pemOrDer).raw : pemOrDer;
  return createHash("sha256").update(der).digest("hex");
}

export interface KeyPair { privateKey: CryptoKey; publicKey: CryptoKey }

export async function generateKey(): Promise<KeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as unknown as KeyPair;
}

export async function keyToPem(k: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey("pkcs8", k);
  return (await lib()).PemConverter.encode(der, "PRIVATE KEY");
}

export async function pemToKey(pem: string): Promise<CryptoKey> {
  let der: Buffer;
  try {
    der = createPrivateKey(pem).export({ format: "der", type: "pkcs8" });
  } catch (err) {
    throw new ThocError("failed_precondition", `not a PEM private key (${(err as Error).message})`);
  }
  return await webcrypto.subtle.importKey("pkcs8", der, ALG, true, ["sign"]);
}

const name = (cn: string, ou: string): X509.JsonName => [{ CN: [cn] }, { O: [CERT_ORG] }, { OU: [ou] }];

/** A key and a CSR for it; the CSR's subject is only a hint, the CA decides the subject. */
export async function makeCsr(cn: string, ou: string): Promise<{ keyPem: string; csrPem: string }> {
  const [keys, x509] = await Promise.all([generateKey(), lib()]);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: name(cn, ou), keys, signingAlgorithm: ALG });
  return { keyPem: await keyToPem(keys.privateKey), csrPem: csr.toString("pem") };
}

export interface CaMaterial {
  certPem: string;
  notAfter: Date;
  fingerprint: string;
  /** Only on a CA holder (the node where `cluster init` ran). */
  key?: CryptoKey;
}

/** A new cluster CA, valid about ten years. */
export async function createCa(clusterName: string, now = new Date()): Promise<{ certPem: string; keyPem: string }> {
  const [keys, x509] = await Promise.all([generateKey(), lib()]);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: [{ CN: [`THOC cluster CA (${clusterName})`] }, { O: [CERT_ORG] }],
    keys, signingAlgorithm: ALG, serialNumber: serial(),
    notBefore: new Date(now.getTime() - 60_000), notAfter: new Date(now.getTime() + CA_TTL_MS),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString("pem"), keyPem: await keyToPem(keys.privateKey) };
}

/** 16 random bytes, first bit clear (a positive INTEGER), hex. */
function serial(): string {
  const b = webcrypto.getRandomValues(new Uint8Array(16));
  b[0] = b[0]! & 0x7f | 0x01;
  return Buffer.from(b).toString("hex");
}

async function verifiedCsr(x509: typeof X509, csrPem: string): Promise<X509.Pkcs10CertificateRequest> {
  let csr: X509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (err) {
    throw new ThocError("invalid_argument", `csr: not a PEM PKCS#10 certificate request (${(err as Error).message})`);
  }
  if (!(await csr.verify())) throw new ThocError("invalid_argument", "csr: its signature does not verify (the CSR must be signed by the key it carries)");
  const alg = csr.publicKey.algorithm as webcrypto.EcKeyAlgorithm;
  if (alg.name !== "ECDSA" || alg.namedCurve !== "P-256") throw new ThocError("invalid_argument", `csr: key must be ECDSA P-256, got ${alg.name} ${alg.namedCurve ?? ""}`.trim());
  return csr;
}

async function issue(ca: CaMaterial, csrPem: string, subject: X509.JsonName, sans: X509.JsonGeneralName[], ttlMs: number, now: Date): Promise<X509.X509Certificate> {
  if (!ca.key) throw new ThocError("failed_precondition", "this node does not hold the cluster CA key (only the node where `thoc-node cluster init` ran does)");
  const x509 = await lib();
  const csr = await verifiedCsr(x509, csrPem);
  const caCert = new x509.X509Certificate(ca.certPem);
  const notAfter = new Date(Math.min(now.getTime() + ttlMs, caCert.notAfter.getTime()));
  return x509.X509CertificateGenerator.create({
    subject, issuer: caCert.subjectName, publicKey: csr.publicKey, signingKey: ca.key, signingAlgorithm: ALG,
    serialNumber: serial(), notBefore: new Date(now.getTime() - 60_000), notAfter,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension(sans),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
}

const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const OPERATOR_NAME = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/;

/** A node certificate: CN=<nodeId>, OU=node; SANs the node's addresses plus loopback, so local clients verify it too. */
export async function issueNodeCertificate(ca: CaMaterial, req: { csrPem: string; nodeId: string; addresses: string[]; ttlMs: number; now?: Date }): Promise<string> {
  if (!NODE_ID.test(req.nodeId)) throw new ThocError("invalid_argument", `node id ${JSON.stringify(req.nodeId)} is not valid (letters, digits, '.', '_', '-')`);
  const sans: X509.JsonGeneralName[] = [{ type: "url", value: `thoc://node/${req.nodeId}` }];
  const seen = new Set<string>();
  for (const a of [...req.addresses, "127.0.0.1", "localhost"]) {
    const v = a.trim().replace(/^\[|\]$/g, "");
    if (!v || seen.has(v) || v === "0.0.0.0" || v === "::") continue;
    if (!isIP(v) && !/^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/.test(v)) throw new ThocError("invalid_argument", `address ${JSON.stringify(a)} is neither an IP address nor a DNS name`);
    seen.add(v);
    sans.push({ type: isIP(v) ? "ip" : "dns", value: v });
  }
  const cert = await issue(ca, req.csrPem, name(req.nodeId, NODE_OU), sans, req.ttlMs, req.now ?? new Date());
  return cert.toString("pem");
}

/** An operator certificate: CN=<name>, OU=<role>. */
export async function issueOperatorCertificate(ca: CaMaterial, req: { csrPem: string; name: string; role: Role; ttlMs: number; now?: Date }): Promise<X509.X509Certificate> {
  if (!OPERATOR_NAME.test(req.name)) throw new ThocError("invalid_argument", `operator name ${JSON.stringify(req.name)} is not valid: 1-64 letters, digits, '.', '_', '@' or '-'`);
  return issue(ca, req.csrPem, name(req.name, req.role), [{ type: "url", value: `thoc://operator/${req.name}` }], req.ttlMs, req.now ?? new Date());
}

export interface CertInfo { serial: string; notBefore: Date; notAfter: Date; subject: string; fingerprint: string }

/**
 * Read with node:crypto (OpenSSL), not @peculiar/x509: sync and without the library at start. The serial is
 * OpenSSL's hex, as rpc/identity.ts reads it off a peer's handshake; the subject "CN=.., O=.., OU=..".
 */
export function certInfo(pem: string): CertInfo {
  const c = new X509Certificate(pem);
  return {
    serial: c.serialNumber.toLowerCase(), notBefore: new Date(c.validFrom), notAfter: new Date(c.validTo),
    subject: c.subject.split("\n").join(", "), fingerprint: certFingerprint(c.raw),
  };
}

/** True when `certPem` was signed by the CA (signature and validity now). */
export async function signedBy(certPem: string, caPem: string, now = new Date()): Promise<boolean> {
  const x509 = await lib();
  const c = new x509.X509Certificate(certPem);
  const ca = new x509.X509Certificate(caPem);
  return c.verify({ publicKey: ca.publicKey, date: now });
}

// ---- files ----

/** Reads a private key file, refusing one that group or others can read. */
export function readKeyFile(file: string): string {
  let st;
  try { st = statSync(file); } catch (err) {
    throw new ThocError("failed_precondition", `cannot read key file ${file}: ${(err as Error).message}`, { file });
  }
  if (st.mode & 0o077) {
    throw new ThocError("failed_precondition",
      `key file ${file} is readable by ${st.mode & 0o070 ? "its group" : "others"} (mode ${(st.mode & 0o777).toString(8).padStart(4, "0")}): run \`chmod 600 ${file}\``, { file });
  }
  return readFileSync(file, "utf8");
}

/** Writes atomically (temp file + rename) with the given mode, so a crash never leaves half a key or certificate. */
export function writeFileAtomic(file: string, data: string, mode: number): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, file);
}

export function ensurePkiDir(p: PkiPaths): void {
  mkdirSync(p.dir, { recursive: true, mode: 0o700 });
  chmodSync(p.dir, 0o700);
}

/** The data dir has a cluster PKI to serve with (CA certificate present). */
export function hasClusterPki(dataDir: string): boolean {
  return existsSync(pkiPaths(dataDir).caCert);
}

/** The CA as this data dir has it: the certificate always, the key on a CA holder. */
export async function loadCa(p: PkiPaths): Promise<CaMaterial> {
  const certPem = readFileSync(p.caCert, "utf8");
  const cert = new X509Certificate(certPem);
  const out: CaMaterial = { certPem, notAfter: new Date(cert.validTo), fingerprint: certFingerprint(cert.raw) };
  if (existsSync(p.caKey)) out.key = await pemToKey(readKeyFile(p.caKey));
  return out;
}

/** `cluster init`: writes the CA (refusing to replace one) and returns it. */
export async function initCa(p: PkiPaths, clusterName: string): Promise<CaMaterial> {
  if (existsSync(p.caCert) || existsSync(p.caKey)) {
    throw new ThocError("already_exists", `${p.dir} already holds a cluster CA (ca.crt): this data dir is initialised; a second CA would split the cluster`);
  }
  ensurePkiDir(p);
  const { certPem, keyPem } = await createCa(clusterName);
  writeFileAtomic(p.caKey, keyPem, 0o600);
  writeFileAtomic(p.caCert, certPem, 0o644);
  return loadCa(p);
}
