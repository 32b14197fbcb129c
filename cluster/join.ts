/**
 * The joining side of a token join. The new node trusts nothing yet: it reads
 * the chain the member presents over TLS without verifying it, keeps the
 * certificate whose sha256 the token names (refusing when none matches: the
 * wrong cluster, or someone in between), then calls Join over TLS verified by
 * that CA. Nothing is written unless the certificate comes back signed by it.
 */
import { connect, type PeerCertificate } from "node:tls";
import { createHash, X509Certificate } from "node:crypto";
import { ThocError } from "../errors/index.js";
import { PkiService } from "../proto/index.js";
import { createClient, credentials } from "../rpc/index.js";
import { parseToken } from "./join-token.js";
import { certInfo, ensurePkiDir, makeCsr, signedBy, writeFileAtomic, type PkiPaths } from "./pki.js";

function splitHostPort(address: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(address);
  if (!m) throw new ThocError("invalid_argument", `join address ${JSON.stringify(address)} is not HOST:PORT`);
  return { host: m[1]!, port: Number(m[2]) };
}

/** Every certificate the server at `address` presents, DER, unverified. */
export function presentedChain(address: string, timeoutMs = 10_000): Promise<Buffer[]> {
  const { host, port } = splitHostPort(address);
  return new Promise((resolve, reject) => {
    const s = connect({ host, port, rejectUnauthorized: false, ALPNProtocols: ["h2"], timeout: timeoutMs });
    const fail = (err: Error) => { s.destroy(); reject(new ThocError("unavailable", `cannot reach ${address} over TLS to join: ${err.message}`)); };
    s.once("error", fail);
    s.once("timeout", () => fail(new Error(`no TLS handshake within ${timeoutMs} ms`)));
    s.once("secureConnect", () => {
      const out: Buffer[] = [];
      let c: PeerCertificate & { issuerCertificate?: PeerCertificate } | undefined = s.getPeerCertificate(true);
      while (c?.raw && !out.some((d) => d.equals(c!.raw))) {
        out.push(c.raw);
        c = c.issuerCertificate;
      }
      s.destroy();
      resolve(out);
    });
  });
}

export interface JoinOptions {
  token: string;
  /** A member's gRPC HOST:PORT. */
  address: string;
  nodeId: string;
  addresses: string[];
  paths: PkiPaths;
  /** The lifetime asked for (pki.nodeCertTtl); the CA caps it. */
  ttlMs: number;
}

export async function joinCluster(o: JoinOptions): Promise<void> {
  const token = parseToken(o.token);
  const chain = await presentedChain(o.address);
  const ca = chain.find((der) => createHash("sha256").update(der).digest("hex") === token.caFingerprint);
  if (!ca) {
    const seen = chain.map((d) => createHash("sha256").update(d).digest("hex").slice(0, 16)).join(", ") || "none";
    throw new ThocError("permission_denied",
      `the member at ${o.address} does not present the CA the join token names (token: sha256 ${token.caFingerprint.slice(0, 16)}…, presented: ${seen}): wrong cluster or address, or someone in between; nothing was stored`);
  }
  const caPem = new X509Certificate(ca).toString();
  const { keyPem, csrPem } = await makeCsr(o.nodeId, "node");
  const c = createClient(PkiService, o.address, { credentials: credentials.createSsl(Buffer.from(caPem)), defaultTimeoutMs: 15_000 });
  let res;
  try {
    res = await c.join({ token: o.token, csr: csrPem, nodeId: o.nodeId, addresses: o.addresses, ttlMs: BigInt(o.ttlMs) });
  } catch (err) {
    const e = ThocError.from(err);
    throw new ThocError(e.code, `joining through ${o.address} failed: ${e.message}; nothing was stored`);
  } finally {
    c.close();
  }
  if (!(await signedBy(res.certificate, caPem))) throw new ThocError("permission_denied", `the certificate ${o.address} returned is not signed by the token's CA; nothing was stored`);
  const subject = certInfo(res.certificate).subject;
  if (!subject.includes(`CN=${o.nodeId}`)) throw new ThocError("internal", `the certificate ${o.address} returned is for ${subject}, not this node`);
  ensurePkiDir(o.paths);
  writeFileAtomic(o.paths.caCert, caPem, 0o644);
  writeFileAtomic(o.paths.nodeKey, keyPem, 0o600);
  writeFileAtomic(o.paths.nodeCert, res.certificate, 0o644);
}
