/**
 * Shared by the replicated object store's multi-agent tests: one root S3 key
 * for every agent, SDK clients that do not retry (a failure must show), waits
 * on the ring view, and a look at one agent's own replicas (signed as a peer).
 */
import { createHash, createHmac } from "node:crypto";
import * as s3 from "@aws-sdk/client-s3";
import { SignatureV4 } from "@smithy/signature-v4";
import type { GenService } from "@bufbuild/protobuf/codegenv2";
import { PeerAuth, signer } from "../cluster/index.js";
import { NodeService, ObjectStoreService } from "../proto/index.js";
import { createClient, type Client } from "../rpc/index.js";
import type { AgentProcess } from "./harness.js";
import { waitFor } from "./harness.js";

export const S3_ENV = { THOC_S3_ACCESS_KEY: "AKIATHOCRINGTEST0001", THOC_S3_SECRET_KEY: "ring-test-secret-0123456789abcdefghijkl" };

export function s3client(a: AgentProcess, key = S3_ENV.THOC_S3_ACCESS_KEY, secret = S3_ENV.THOC_S3_SECRET_KEY): s3.S3Client {
  return new s3.S3Client({
    endpoint: a.s3Url, region: "us-east-1", forcePathStyle: true, maxAttempts: 1,
    credentials: { accessKeyId: key, secretAccessKey: secret },
    requestHandler: { requestTimeout: 15_000, connectionTimeout: 3_000 },
  });
}

export interface RingView {
  localId: string;
  nodes: { id: string; name: string; state: string; share: number; replicaShare: number; weight: number }[];
  replicas: number;
  writeQuorum: number;
  readQuorum: number;
  balance: { min: number; max: number };
  misplacedReplicas: number;
  misplacedBytes: number;
  pendingHints: number;
}

export async function ringOf(a: AgentProcess): Promise<RingView> {
  const r = await a.cli(["ring", "--json"]);
  if (r.code !== 0) throw new Error(`ring on ${a.name}: ${r.stderr}`);
  return JSON.parse(r.stdout) as RingView;
}

/** Waits until every given agent sees exactly `up` nodes up in its ring (and `removed` removed). */
export async function waitRing(agents: AgentProcess[], up: string[], timeoutMs = 30_000, removed: string[] = []): Promise<void> {
  for (const a of agents) {
    await waitFor(`${a.name} sees ${up.join(",")} up${removed.length ? ` and ${removed.join(",")} removed` : ""}`, async () => {
      const v = await ringOf(a);
      const ups = v.nodes.filter((n) => n.state === "up").map((n) => n.name).sort();
      const rem = v.nodes.filter((n) => n.state === "removed").map((n) => n.name).sort();
      return JSON.stringify(ups) === JSON.stringify([...up].sort()) && removed.every((x) => rem.includes(x));
    }, timeoutMs, 250);
  }
}

/** A metric's value from an agent's /metrics (first sample). */
export async function metric(a: AgentProcess, name: string): Promise<number> {
  const text = await (await fetch(`${a.httpUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  if (!line) throw new Error(`no metric ${name} on ${a.name}`);
  return Number(line.slice(line.lastIndexOf(" ") + 1));
}

export async function listAll(c: s3.S3Client, bucket: string, opts: { prefix?: string; delimiter?: string; pageSize?: number } = {}): Promise<string[]> {
  const out: string[] = [];
  let token: string | undefined;
  do {
    const r = await c.send(new s3.ListObjectsV2Command({ Bucket: bucket, Prefix: opts.prefix, Delimiter: opts.delimiter, MaxKeys: opts.pageSize, ContinuationToken: token }));
    out.push(...(r.CommonPrefixes ?? []).map((p) => `prefix:${p.Prefix!}`), ...(r.Contents ?? []).map((o) => o.Key!));
    token = r.NextContinuationToken;
  } while (token);
  return out;
}

export async function getText(c: s3.S3Client, bucket: string, key: string): Promise<string> {
  const r = await c.send(new s3.GetObjectCommand({ Bucket: bucket, Key: key }));
  return r.Body!.transformToString();
}

class NodeSha256 {
  private readonly h;
  constructor(secret?: unknown) { this.h = secret ? createHmac("sha256", secret as Buffer) : createHash("sha256"); }
  update(d: Uint8Array | string) { this.h.update(d); }
  async digest() { return new Uint8Array(this.h.digest()); }
  reset() { /* unused */ }
}

/**
 * A presigned PUT request line for an agent (UNSIGNED-PAYLOAD, as presigners
 * sign), for tests that write the body themselves over a raw socket.
 */
export function presignedPutPath(a: AgentProcess, bucket: string, key: string, accessKeyId = S3_ENV.THOC_S3_ACCESS_KEY, secretAccessKey = S3_ENV.THOC_S3_SECRET_KEY): Promise<string> {
  return presignedPath(a, "PUT", bucket, key, accessKeyId, secretAccessKey);
}

/** A presigned request line (path and SigV4 query, UNSIGNED-PAYLOAD) for `method` on an agent's object, valid 300 s. */
export async function presignedPath(a: AgentProcess, method: string, bucket: string, key: string, accessKeyId = S3_ENV.THOC_S3_ACCESS_KEY, secretAccessKey = S3_ENV.THOC_S3_SECRET_KEY): Promise<string> {
  const host = new URL(a.s3Url).host;
  const sg = new SignatureV4({ credentials: { accessKeyId, secretAccessKey }, region: "us-east-1", service: "s3", sha256: NodeSha256, uriEscapePath: false, applyChecksum: false });
  const p = await sg.presign({ method, protocol: "http:", hostname: a.bind, port: Number(host.split(":")[1]), path: `/${bucket}/${key}`, query: {},
    headers: { host, "x-amz-content-sha256": "UNSIGNED-PAYLOAD" } }, { expiresIn: 300 });
  const q = Object.entries(p.query as Record<string, string>).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&");
  return `${p.path}?${q}`;
}

/** `a`'s node id (NodeService.GetNode): what peers sign their calls to `a` for. */
export async function nodeIdOf(a: AgentProcess): Promise<string> {
  const c = createClient(NodeService, a.clientAddress, { defaultTimeoutMs: 5000 });
  try {
    return (await c.getNode({})).node!.id;
  } finally {
    c.close();
  }
}

/** A replica-protocol client to `a` whose calls are signed as a peer of its cluster (its cluster key), as agents sign each other. */
export async function peerClient(a: AgentProcess, timeoutMs = 5000): Promise<Client<typeof ObjectStoreService extends GenService<infer T> ? T : never>> {
  const auth = new PeerAuth({ clusterName: "thoc", keys: [a.clusterKey], nodeId: "test-probe" });
  return createClient(ObjectStoreService, a.grpcAddress, { defaultTimeoutMs: timeoutMs, metadata: signer(auth, await nodeIdOf(a)) });
}

export interface ReplicaHead { version: string; tombstone: boolean; sha256: string; size: bigint }

/** What `a`'s own replica holds of each key (undefined: never seen, or an expired tombstone), through a signed HeadReplica. */
export async function ownReplicas(a: AgentProcess, bucket: string, keys: string[]): Promise<Map<string, ReplicaHead | undefined>> {
  const c = await peerClient(a);
  try {
    const out = new Map<string, ReplicaHead | undefined>();
    for (const key of keys) {
      const r = await c.headReplica({ bucket, key });
      out.set(key, r.record && { version: r.record.version, tombstone: r.record.tombstone, sha256: r.record.sha256, size: r.record.size });
    }
    return out;
  } finally {
    c.close();
  }
}
