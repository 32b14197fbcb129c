/**
 * Certificate files for the agent's own TLS listeners besides gRPC (the S3
 * port, the VNC WebSocket), read once at start with errors that name the
 * option to fix, and checked as a pair (a key that does not match its
 * certificate fails here, not at a client's first handshake).
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { createSecureContext } from "node:tls";
import { ThocError } from "../errors/index.js";

export interface TlsPair { cert: Buffer; key: Buffer }

/** Reads and checks a PEM certificate and key; `option` is the config path of the pair, e.g. "s3.tls". */
export function readTlsPair(certFile: string, keyFile: string, option: string): TlsPair {
  const read = (f: string, which: string) => {
    try {
      return readFileSync(f);
    } catch (err) {
      throw new ThocError("invalid_argument", `config: ${option}.${which}: cannot read ${f}: ${(err as Error).message}`, { key: `${option}.${which}` });
    }
  };
  const pair = { cert: read(certFile, "certFile"), key: read(keyFile, "keyFile") };
  try {
    createSecureContext(pair);
  } catch (err) {
    // OpenSSL's text names what is wrong (no PEM, key values mismatch); never the key's contents.
    throw new ThocError("invalid_argument", `config: ${option}: ${certFile} and ${keyFile} are not a PEM certificate and its private key: ${(err as Error).message}`, { key: `${option}.certFile` });
  }
  return pair;
}

/**
 * The certificate the agent serves gRPC with, for listeners that follow it
 * (the VNC WebSocket): the operator's own (tls.certFile/keyFile) when set,
 * else the cluster PKI's node certificate in the data dir, else none.
 */
export function agentTlsPair(tls: { certFile: string; keyFile: string }, dataDir: string): TlsPair | undefined {
  if (tls.certFile) return readTlsPair(tls.certFile, tls.keyFile, "tls");
  const cert = path.join(dataDir, "pki", "node.crt"), key = path.join(dataDir, "pki", "node.key");
  if (existsSync(cert) && existsSync(key)) return readTlsPair(cert, key, "tls");
  return undefined;
}
