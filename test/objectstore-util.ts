/**
 * Shared by the replicated object store's multi-agent tests: one root S3 key
 * for every agent, SDK clients that do not retry (a failure must show), and
 * waits on the ring view.
 */
import * as s3 from "@aws-sdk/client-s3";
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
