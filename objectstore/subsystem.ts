/**
 * The objectstore subsystem: opens the replicated store (durable replicas on
 * this node, the ring, the replica protocol; replicated.ts), the S3 key
 * registry, registers KeyService, and serves S3 on bind:s3Port from the ring.
 * Healthy once the S3 port is listening and, on a joining node, the ring has
 * arrived from the cluster (until then S3 answers 503, so /readyz must not
 * say 200); its detail line gives the ring size and the effective N/W/R.
 */
import client from "prom-client";
import { followTlsPair, readTlsPair, type AgentContext, type Logger, type Membership, type Subsystem, type SubsystemHealth } from "../core/index.js";
import { hostPort, isLoopback } from "../config/index.js";
import type { ClusterTable } from "../cluster/index.js";
import { ThocError } from "../errors/index.js";
import { KeyService, type ClusterService } from "../proto/index.js";
import type { ImplOf } from "../rpc/index.js";
import type { BlobStore } from "./blob/index.js";
import { KeyRegistry, keyService } from "./keys/index.js";
import { createS3Server, type S3Server } from "./s3/index.js";
import { openReplicated, type Replicated } from "./replicated.js";
import { sseKeys } from "./sse-dev-key.js";

/** What the object store needs from the rest of the agent, given by the composition root. */
export interface ObjectStoreDeps {
  /** The gossip view: liveness and addresses of peers; must be started first. */
  membership: Membership;
  /** Where GetRing / RemoveNode are served (ClusterService belongs to membership). */
  clusterService: { extendClusterService(methods: Partial<ImplOf<typeof ClusterService>>): void };
  /** More tables replicated to every node, for other subsystems (clusterTable()). */
  tables?: readonly string[];
}

export class ObjectStoreSubsystem implements Subsystem {
  readonly name = "objectstore";
  private state: SubsystemHealth = { status: "starting" };
  private server?: S3Server;
  private certWatch?: { stop(): void };
  private shutdownMs = 3000;
  replicated?: Replicated;
  keys?: KeyRegistry;
  /** The S3 port actually bound (differs from config with --s3-port 0). */
  port = 0;

  constructor(private readonly deps: ObjectStoreDeps) {}

  async start(ctx: AgentContext): Promise<void> {
    const { config } = ctx;
    // Fails with a clear start-up error when membership was not started first.
    this.deps.membership.local();
    const log = ctx.log.child({ subsystem: this.name });
    this.shutdownMs = Math.max(500, Math.floor(config.shutdownTimeout / 2));

    const dataLoss = new client.Counter({
      name: "thoc_objectstore_data_loss_total", help: "Stored object data that failed its checksum on read (bit rot, truncation, missing file).",
      registers: [ctx.metrics],
    });
    this.replicated = await openReplicated(ctx, this.deps.membership, log, (e) => {
      dataLoss.inc();
      log.error({ code: e.code, blob: e.details.blob }, e.message);
    }, { tables: this.deps.tables ?? [] });
    this.deps.clusterService.extendClusterService(this.replicated.admin);
    this.keys = await KeyRegistry.open(ctx.store, config, this.replicated.keyTable);
    if (this.keys.rootSource === "none") log.warn("no S3 root key: set s3.accessKey and s3.secretKey (or create keys with `thoc-node s3 key create`)");

    ctx.rpc.add(KeyService, keyService(this.keys));

    const t = config.s3.tls;
    const tls = t.certFile ? readTlsPair(t.certFile, t.keyFile, "s3.tls") : undefined;
    this.server = createS3Server({
      store: this.replicated.blobs, credentials: this.keys, config, log: log.child({ component: "s3" }), metrics: ctx.metrics, ...(tls ? { tls } : {}),
      sseKeys: await sseKeys(config, ctx.store),
      // Conditional writes lock their key on a majority of its replicas (after this node's own lock). On a ring of
      // one (--dev alone) the only replica is this node: its lease table is asked in-process, no call leaves it.
      keyLocker: this.replicated.keyLocker,
    });
    this.port = await this.server.listen(config.bind, config.s3Port);
    if (tls) {
      const server = this.server;
      this.certWatch = followTlsPair(t, "s3.tls", (p) => { server.setTls(p); log.info({ certFile: t.certFile }, "S3 API: renewed certificate loaded"); },
        (err) => log.warn({ err: err.message }, "S3 API: the changed certificate files do not load; still serving the previous certificate"));
    }
    this.state = { status: "up" };
    const scheme = tls ? "https" : "http";
    log.info({ s3: `${scheme}://${hostPort(config.bind, this.port)}`, rootKey: this.keys.rootSource }, "S3 API listening");
    if (!tls && !isLoopback(config.bind)) log.warn({ key: "s3.tls.certFile" }, "S3 API serves plaintext HTTP off loopback: object data crosses the network unencrypted (set s3.tls.certFile and s3.tls.keyFile)");
    if (config.dev) devBanner(this.keys, `${scheme}://${hostPort(config.bind, this.port)}`, config.s3.region, ctx.store.dataDir, log);
  }

  /** The blob store, for other subsystems (VM images keep a reserved bucket in it); throws until started. */
  blobStore(): BlobStore {
    if (!this.replicated) throw new ThocError("failed_precondition", "the object store is not started: the composition root must start it before the subsystems that keep data in it");
    return this.replicated.blobs;
  }

  /** A table named in ObjectStoreDeps.tables (or one of the store's own), replicated to every node; throws until started. */
  clusterTable(name: string): ClusterTable {
    if (!this.replicated) throw new ThocError("failed_precondition", "the object store is not started: the composition root must start it before the subsystems that keep tables in it");
    return this.replicated.table(name);
  }

  health(): SubsystemHealth {
    if (this.state.status === "up" && this.replicated) {
      return { status: this.replicated.serving() ? "up" : "starting", detail: this.replicated.summary() };
    }
    return this.state;
  }

  quiesce(): void {
    void this.server?.stopAccepting();
  }

  async stop(): Promise<void> {
    this.state = { status: "down", detail: "stopped" };
    this.certWatch?.stop();
    await this.server?.close(this.shutdownMs).catch(() => {});
    await this.replicated?.blobs.close().catch(() => {});
    await this.replicated?.stop().catch(() => {});
  }
}

/**
 * The only place a secret is shown: stderr, human-readable, in --dev. The
 * JSON log on stdout only says which kind of root key is in use.
 */
function devBanner(keys: KeyRegistry, endpoint: string, region: string, dataDir: string, _log: Logger): void {
  const root = keys.rootCredentials();
  if (!root || keys.rootSource === "config") return;
  process.stderr.write([
    "",
    `S3 root credentials (${keys.rootSource === "generated" ? "generated now" : "generated at first start"}, kept in ${dataDir}):`,
    `  export AWS_ACCESS_KEY_ID=${root.accessKeyId}`,
    `  export AWS_SECRET_ACCESS_KEY=${root.secretKey}`,
    `  export AWS_DEFAULT_REGION=${region}`,
    `  aws --endpoint-url ${endpoint} s3 ls`,
    "",
  ].join("\n") + "\n");
}
