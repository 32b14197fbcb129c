/**
 * The seam between the S3 wire protocol (this folder) and the objectstore
 * subsystem that wires it into the agent (objectstore/subsystem.ts): the
 * subsystem owns the BlobStore and the key registry and hands both in.
 */
import type { Registry } from "prom-client";
import type { Config } from "../../config/index.js";
import type { Logger } from "../../core/index.js";
import type { BlobStore, KeyLocker } from "../blob/index.js";

/** One S3 access key's secret and owner, as the key registry knows it. */
export interface Credential {
  secretKey: string;
  /** The identity that owns buckets created with this key (shown as Owner in XML). */
  owner: string;
}

/** Resolves an access key id; undefined → 403 InvalidAccessKeyId. */
export interface CredentialLookup {
  lookup(accessKeyId: string): Promise<Credential | undefined>;
}

export interface S3ServerOptions {
  store: BlobStore;
  credentials: CredentialLookup;
  config: Config;
  log: Logger;
  /** thoc_s3_* metrics are registered here. */
  metrics: Registry;
  /** Clock for signature time checks (tests replay AWS's published examples); default Date.now. */
  now?: () => number;
  /** Serve HTTPS with this PEM certificate (chain) and key (s3.tls.certFile/keyFile); plaintext HTTP without. */
  tls?: { cert: Buffer; key: Buffer };
  /**
   * The keys SSE-S3 master keys are derived from (base64, 32 bytes; the first
   * wraps new data keys, all unwrap): default config.cluster.keys. The
   * subsystem hands in a generated per-data-dir key in --dev (sse-dev-key.ts).
   */
  sseKeys?: readonly string[];
  /**
   * The per-key lock of conditional writes (conditional.ts): default this
   * server's own (LocalKeyLocker); a cluster hands in one whose lease a
   * majority of the key's replicas grant (objectstore/subsystem.ts).
   */
  keyLocker?: KeyLocker;
}

export interface S3Server {
  /** Binds and resolves with the port actually bound (useful with port 0). */
  listen(host: string, port: number): Promise<number>;
  /** Stops accepting new connections (and closes idle ones); requests under way go on. Resolves once all are closed. */
  stopAccepting(): Promise<void>;
  /** Serves a renewed certificate to new connections (HTTPS only; throws on a plaintext server). */
  setTls(pair: { cert: Buffer; key: Buffer }): void;
  /** Stops accepting, waits up to timeoutMs for in-flight requests, then destroys the rest. */
  close(timeoutMs: number): Promise<void>;
}
