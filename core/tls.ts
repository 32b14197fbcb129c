/**
 * Certificate files for the agent's own TLS listeners besides gRPC (the S3
 * port, the VNC WebSocket), read with errors that name the option to fix, a
 * key others can read refused (config/ readKeyFile), and checked as a pair (a
 * key that does not match its certificate fails here, not at a client's first
 * handshake).
 */
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { createSecureContext } from "node:tls";
import { readConfigFile, readKeyFile, type Config } from "../config/index.js";
import { ThocError } from "../errors/index.js";

export interface TlsPair { cert: Buffer; key: Buffer }

/** Reads and checks a PEM certificate and key; `option` is the config path of the pair, e.g. "s3.tls". */
export function readTlsPair(certFile: string, keyFile: string, option: string): TlsPair {
  const pair = { cert: readConfigFile(certFile, `${option}.certFile`), key: readKeyFile(keyFile, `${option}.keyFile`) };
  try {
    createSecureContext(pair);
  } catch (err) {
    // OpenSSL's text names what is wrong (no PEM, key values mismatch); never the key's contents.
    throw new ThocError("invalid_argument", `config: ${option}: ${certFile} and ${keyFile} are not a PEM certificate and its private key: ${(err as Error).message}`, { key: `${option}.certFile` });
  }
  return pair;
}

/**
 * Every file the config names, read (and a key's mode checked) the way the
 * agent reads them at start, before anything is bound or written: a bad path
 * is a config error (exit 2). `config validate` runs the same checks.
 */
export function checkConfigFiles(c: Pick<Config, "tls" | "s3">): void {
  const t = c.tls;
  if (t.certFile) {
    if (t.caFile) readConfigFile(t.caFile, "tls.caFile");
    readConfigFile(t.certFile, "tls.certFile");
    readKeyFile(t.keyFile, "tls.keyFile");
  }
  if (c.s3.tls.certFile) readTlsPair(c.s3.tls.certFile, c.s3.tls.keyFile, "s3.tls");
}

export interface TlsFiles { certFile: string; keyFile: string }

/**
 * The certificate files the agent serves gRPC with, for listeners that follow
 * it (the VNC WebSocket): the operator's own (tls.certFile/keyFile) when set,
 * else the cluster PKI's node certificate in the data dir, else none.
 */
export function agentTlsFiles(tls: TlsFiles, dataDir: string): TlsFiles | undefined {
  if (tls.certFile) return { certFile: tls.certFile, keyFile: tls.keyFile };
  const certFile = path.join(dataDir, "pki", "node.crt"), keyFile = path.join(dataDir, "pki", "node.key");
  return existsSync(certFile) && existsSync(keyFile) ? { certFile, keyFile } : undefined;
}

/**
 * Follows renewals: every `intervalMs` the files' mtimes are looked at, and a
 * changed pair is read, checked and handed to `apply` (a TLS server's
 * setSecureContext), so a certificate renewed on disk (certbot, the cluster
 * PKI) is served without a restart. A pair that does not load (half written,
 * mismatched) is reported and the old one kept; the next change is tried again.
 */
export function followTlsPair(files: TlsFiles, option: string, apply: (p: TlsPair) => void, onError: (err: Error) => void, intervalMs = 60_000): { stop(): void } {
  const stamp = () => {
    try { return `${statSync(files.certFile).mtimeMs}/${statSync(files.keyFile).mtimeMs}`; } catch { return "missing"; }
  };
  let last = stamp();
  const timer = setInterval(() => {
    const now = stamp();
    if (now === last) return;
    last = now;
    try {
      apply(readTlsPair(files.certFile, files.keyFile, option));
    } catch (err) {
      onError(err as Error);
    }
  }, intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
