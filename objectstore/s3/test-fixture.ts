/**
 * Test fixture: an S3 server on 127.0.0.1:0 over the store a test hands it
 * (by default a MemoryBlobStore) with two keys (two owners), an
 * @aws-sdk/client-s3 client factory for it, and raw signed requests.
 */
import { createHash, createHmac } from "node:crypto";
import http from "node:http";
import { S3Client, type S3ClientConfig } from "@aws-sdk/client-s3";
import { SignatureV4 } from "@smithy/signature-v4";
import { Registry } from "prom-client";
import { loadConfig, type Config } from "../../config/index.js";
import { createLogger } from "../../core/index.js";
import { MemoryBlobStore, type BlobStore } from "../blob/index.js";
import { createS3Server } from "./server.js";
import type { CredentialLookup, S3Server } from "./types.js";

export const KEYS: Record<string, { secretKey: string; owner: string }> = {
  AKIATESTROOT0000001: { secretKey: "rootsecret/abcdefghijklmnopqrstuvwxyz012", owner: "root" },
  AKIATESTOTHER000002: { secretKey: "othersecret/abcdefghijklmnopqrstuvwxyz01", owner: "other" },
  /** The key of AWS's published SigV4 examples. */
  AKIAIOSFODNN7EXAMPLE: { secretKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", owner: "root" },
};
export const ROOT = "AKIATESTROOT0000001";
export const OTHER = "AKIATESTOTHER000002";

export const credentials: CredentialLookup = {
  async lookup(id) { return KEYS[id]; },
};

export interface Fixture {
  server: S3Server;
  store: BlobStore;
  registry: Registry;
  config: Config;
  port: number;
  endpoint: string;
  client(extra?: Partial<S3ClientConfig> & { key?: string; secret?: string }): S3Client;
  close(): Promise<void>;
}

/** Makes a store for one fixture, and disposes of it (and whatever it stands on) after. */
export type MakeStore = () => Promise<{ store: BlobStore; dispose(): Promise<void> }>;

/** Starts the S3 server over `given`: a store (closed with the fixture), a MakeStore, or nothing for a new MemoryBlobStore. */
export async function startS3(env: Record<string, string> = {}, given?: BlobStore | MakeStore, now?: () => number): Promise<Fixture> {
  const made = typeof given === "function" ? await given()
    : given ? { store: given, dispose: () => given.close() }
    : (() => { const m = new MemoryBlobStore(); return { store: m, dispose: () => m.close() }; })();
  const store = made.store;
  const config = loadConfig({ dev: true, env: { THOC_PRESET: "test", ...env }, flags: {} });
  const registry = new Registry();
  const log = createLogger((process.env.THOC_TEST_LOG_LEVEL as "info") ?? "silent");
  const server = createS3Server({ store, credentials, config, log, metrics: registry, now });
  const port = await server.listen("127.0.0.1", 0);
  const endpoint = `http://127.0.0.1:${port}`;
  const clients: S3Client[] = [];
  return {
    server, store, registry, config, port, endpoint,
    client(extra = {}) {
      const id = extra.key ?? ROOT;
      const c = new S3Client({
        endpoint, region: config.s3.region, forcePathStyle: true, maxAttempts: 1,
        credentials: { accessKeyId: id, secretAccessKey: extra.secret ?? KEYS[id]?.secretKey ?? "nope" },
        ...extra,
      });
      clients.push(c);
      return c;
    },
    async close() {
      for (const c of clients) c.destroy();
      await server.close(1000);
      await made.dispose();
    },
  };
}

// ---- raw HTTP requests, signed by the SDK's own signer (@smithy/signature-v4) ----

class NodeSha256 {
  private h;
  constructor(secret?: unknown) {
    this.h = secret ? createHmac("sha256", secret as Buffer) : createHash("sha256");
  }
  update(d: Uint8Array | string) { this.h.update(d); }
  async digest() { return new Uint8Array(this.h.digest()); }
  reset() { /* unused */ }
}

export function signer(key = ROOT, secret?: string, region = "us-east-1"): SignatureV4 {
  return new SignatureV4({
    credentials: { accessKeyId: key, secretAccessKey: secret ?? KEYS[key]?.secretKey ?? "x" },
    region, service: "s3", sha256: NodeSha256, uriEscapePath: false, applyChecksum: false,
  });
}

export interface RawRequest {
  method: string;
  path: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** Defaults to the body's SHA-256; pass UNSIGNED-PAYLOAD or a STREAMING-* mode to override. */
  payload?: string;
  key?: string;
  secret?: string;
  signingDate?: Date;
  /** Send no Authorization at all. */
  anonymous?: boolean;
}

export interface RawResponse { status: number; headers: http.IncomingHttpHeaders; body: string }

export function qs(q: Record<string, string> = {}): string {
  const s = Object.entries(q).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&");
  return s ? "?" + s : "";
}

/** Signs (unless anonymous) and sends one request; the body is sent whole. */
export async function raw(f: Fixture, r: RawRequest): Promise<RawResponse> {
  const body = r.body === undefined ? Buffer.alloc(0) : Buffer.from(r.body);
  const headers: Record<string, string> = { host: `127.0.0.1:${f.port}`, ...(r.headers ?? {}) };
  if (!("content-length" in headers)) headers["content-length"] = String(body.length);
  if (!r.anonymous) {
    headers["x-amz-content-sha256"] ??= r.payload ?? createHash("sha256").update(body).digest("hex");
    const signed = await signer(r.key, r.secret).sign({
      method: r.method, protocol: "http:", hostname: "127.0.0.1", port: f.port, path: r.path, query: r.query ?? {}, headers,
    }, { signingDate: r.signingDate });
    Object.assign(headers, signed.headers);
  }
  return send(f.port, r.method, r.path + qs(r.query), headers, body);
}

export function send(port: number, method: string, pathAndQuery: string, headers: Record<string, string>, body: Buffer): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method, path: pathAndQuery, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** The <Code> of an S3 XML error body. */
export const codeOf = (body: string) => /<Code>([^<]*)<\/Code>/.exec(body)?.[1];
