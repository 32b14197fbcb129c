/**
 * In-process replica nodes for tests: each has its own in-memory replica and
 * hint stores, HLC, ring state and a real gRPC server on 127.0.0.1 (port 0 the
 * first time, the same port after a restart), serving the authenticated
 * replica protocol. Not used by production code.
 */
import { randomBytes } from "node:crypto";
import { RpcServer } from "../../rpc/index.js";
import { ObjectStoreService } from "../../proto/index.js";
import { PeerAuth, authenticated } from "../../cluster/index.js";
import { Coordinator, type CoordinatorOptions } from "./coordinator.js";
import { LocalReplica, type ReplicaTarget } from "./local-replica.js";
import { HlcClock } from "../../cluster/index.js";
import { MemoryHintStore } from "./hints.js";
import { KeyLeases } from "./key-leases.js";
import { Peers } from "./peer.js";
import { BulkServer } from "./bulk-server.js";
import { BULK_PREFACE } from "./bulk-wire.js";
import { MemoryReplicaStore } from "./replica-store.js";
import { RingState } from "./ring-state.js";
import { MemoryRingHolder, replicaService } from "./service.js";

export const TEST_CLUSTER = "test-cluster";
export const testKey = (): string => randomBytes(32).toString("base64");

export class TestNode {
  readonly store = new MemoryReplicaStore();
  readonly hints = new MemoryHintStore();
  readonly leases = new KeyLeases();
  readonly hlc: HlcClock;
  readonly auth: PeerAuth;
  readonly ring: MemoryRingHolder;
  server?: RpcServer;
  port = 0;
  idleTimeoutMs = 2000;

  constructor(readonly id: string, readonly keys: string[], ring: RingState) {
    this.hlc = new HlcClock(id);
    this.auth = new PeerAuth({ clusterName: TEST_CLUSTER, keys, nodeId: id });
    this.ring = new MemoryRingHolder(ring.clone());
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const impl = replicaService({ store: this.store, hints: this.hints, hlc: this.hlc, ring: this.ring, chunkSize: 1024, idleTimeoutMs: this.idleTimeoutMs, leases: this.leases });
    this.server = new RpcServer().add(ObjectStoreService, authenticated(ObjectStoreService, impl, this.auth));
    // Bodies travel the bulk data path on the same port, as in the agent.
    const bulk = new BulkServer({ store: this.store, hints: this.hints, hlc: this.hlc, auth: this.auth, tls: () => undefined, idleTimeoutMs: this.idleTimeoutMs });
    this.server.addPreface(BULK_PREFACE, (sock) => bulk.handle(sock));
    this.port = await this.server.listen("127.0.0.1", this.port);
    this.server.setAllServing("SERVING");
  }

  /** Like a crash: connections drop, in-flight calls fail. The stores survive (they stand for the disk). */
  kill(): void {
    this.server?.forceShutdown();
    this.server = undefined;
  }
}

export interface TestCluster {
  nodes: TestNode[];
  byId(id: string): TestNode;
  /** A coordinator on node i, talking to the others over gRPC. */
  coordinator(i: number, extra?: Partial<CoordinatorOptions>): { coord: Coordinator; peers: Peers; target: (id: string) => ReplicaTarget };
  /** Peers created afterwards dial `address` for node `id` (a proxy in between); undefined undoes it. */
  redirect(id: string, address: string | undefined): void;
  close(): Promise<void>;
}

/** grpcBodies: bodies over the replica protocol's gRPC streams instead of the bulk data path. */
export async function startTestCluster(n: number, opts: { vnodes?: number; grpcBodies?: boolean } = {}): Promise<TestCluster> {
  const keys = [testKey()];
  const state = new RingState();
  const ids = Array.from({ length: n }, (_, i) => `node-${i + 1}`);
  const boot = new HlcClock("boot");
  for (const id of ids) state.join(id, id, 1, boot.now());
  const nodes = ids.map((id) => new TestNode(id, keys, state));
  for (const node of nodes) await node.start();
  const byId = (id: string) => nodes.find((x) => x.id === id)!;
  const redirects = new Map<string, string>();
  const directory = { address: (id: string) => { const x = nodes.find((y) => y.id === id); return redirects.get(id) ?? (x ? x.address : undefined); } };
  const allPeers: Peers[] = [];
  return {
    nodes,
    byId,
    redirect(id, address) {
      if (address === undefined) redirects.delete(id);
      else redirects.set(id, address);
    },
    coordinator(i, extra = {}) {
      const self = nodes[i]!;
      const peers = new Peers({ auth: self.auth, directory, hlc: self.hlc, timeoutMs: 2000, ...(opts.grpcBodies ? {} : { bulk: { tls: () => undefined } }) });
      allPeers.push(peers);
      const local = new LocalReplica(self.id, self.store, self.hints);
      const target = (id: string): ReplicaTarget => (id === self.id ? local : peers.get(id));
      const coord = new Coordinator({
        self: self.id, ring: () => self.ring.state().ring(opts.vnodes ?? 64), target, hlc: self.hlc,
        replicas: 3, writeQuorum: 2, readQuorum: 2, failureBackoffMs: 0, ...extra,
      });
      return { coord, peers, target };
    },
    async close() {
      for (const p of allPeers) p.close();
      for (const node of nodes) node.kill();
    },
  };
}

export async function* bytes(...parts: (string | Uint8Array)[]): AsyncIterable<Uint8Array> {
  for (const p of parts) yield typeof p === "string" ? Buffer.from(p) : p;
}

export async function readAll(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of body) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
}
