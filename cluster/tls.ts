/**
 * How an agent dials its peers. An agent that serves its gRPC API with TLS
 * (tls.certFile) is dialled with TLS too, so peers must be: replica bodies,
 * table sync (S3 secrets) and ring exchange would otherwise go in plaintext,
 * and a TLS-only server refuses a plaintext caller outright. The caller
 * verifies the peer against tls.caFile (the cluster's CA; the system roots
 * when empty) and presents its own certificate, for servers that ask for one.
 */
import { readFileSync } from "node:fs";
import { ThocError } from "../errors/index.js";
import { credentials, type ChannelCredentials } from "../rpc/index.js";
import type { TlsMaterial } from "../core/index.js";

export interface PeerTlsConfig { certFile: string; keyFile: string; caFile: string }

export function peerCredentials(tls: PeerTlsConfig): ChannelCredentials {
  if (!tls.certFile) return credentials.createInsecure();
  const read = (f: string, key: keyof PeerTlsConfig) => {
    try { return readFileSync(f); } catch (err) {
      throw new ThocError("invalid_argument", `config: tls.${key}: cannot read ${f}: ${(err as Error).message}`, { key: `tls.${key}` });
    }
  };
  return credentials.createSsl(tls.caFile ? read(tls.caFile, "caFile") : null, read(tls.keyFile, "keyFile"), read(tls.certFile, "certFile"));
}

const materials = new Map<string, TlsMaterial>();

/** The PEMs of tls.* (for the bulk data path beside gRPC); undefined without a certificate (plaintext). Read once per file set. */
export function filesMaterial(tls: PeerTlsConfig): TlsMaterial | undefined {
  if (!tls.certFile) return undefined;
  const k = `${tls.certFile}\0${tls.keyFile}\0${tls.caFile}`;
  let m = materials.get(k);
  if (!m) {
    const read = (f: string, key: keyof PeerTlsConfig) => {
      try { return readFileSync(f, "utf8"); } catch (err) {
        throw new ThocError("invalid_argument", `config: tls.${key}: cannot read ${f}: ${(err as Error).message}`, { key: `tls.${key}` });
      }
    };
    m = { cert: read(tls.certFile, "certFile"), key: read(tls.keyFile, "keyFile"), ...(tls.caFile ? { ca: read(tls.caFile, "caFile") } : {}) };
    materials.set(k, m);
  }
  return m;
}
