/**
 * A node joining an existing cluster must not coordinate requests with a ring
 * of only itself (it would acknowledge writes nobody else holds): until it has
 * exchanged the ring with a peer, S3 answers 503. The same holds for a node
 * that restarts with a stored ring listing others: its key and bucket tables
 * may be stale (a key deleted, a bucket removed while it was down), so it
 * serves S3 only after one ring + table exchange with a live member. Only the
 * first node of a cluster (no --join, a ring of itself) starts ready. Every
 * join/alive event starts a ring + table exchange with that member.
 */
import type { Logger, Membership } from "../core/index.js";
import { ThocError } from "../errors/index.js";
import { blobError } from "./blob/index.js";
import type { ReplicationNode, RingHolder } from "./replica/index.js";

export interface JoinGateOptions {
  node: ReplicationNode;
  ring: RingHolder;
  membership: Membership;
  self: string;
  /** Started with --join: not ready until a peer sent the ring. */
  joining: boolean;
  log: Logger;
}

export class JoinGate {
  private done: boolean;
  private readonly unsubscribe: () => void;
  private readonly retry: NodeJS.Timeout;

  constructor(private readonly o: JoinGateOptions) {
    this.done = !o.joining && o.ring.state().all().length <= 1;
    this.unsubscribe = o.membership.subscribe((e) => {
      if (e.member.id === o.self) return;
      if (e.type === "join" || e.type === "alive") {
        o.node.nodeUp();
        void this.syncWith(e.member.id);
      }
    });
    this.retryAlive();
    // A failed first exchange (a peer channel in its reconnect backoff) gets no second join event: retry
    // every second until one succeeds.
    this.retry = setInterval(() => { if (!this.done) this.retryAlive(); }, 1000);
    this.retry.unref();
  }

  private retryAlive(): void {
    for (const m of this.o.membership.members()) if (m.id !== this.o.self && m.state === "alive") void this.syncWith(m.id);
  }

  /**
   * One exchange of ours (ring and tables) with a live member. A ring of several nodes is not enough: a
   * restarted node has that from its own store, and a peer's ring push brings no tables.
   */
  synced(): boolean {
    return this.done;
  }

  /** Throws unavailable (S3 503) while joining. */
  check(): void {
    if (!this.synced()) throw blobError("Unavailable", "this node has not received the object store's ring from the cluster yet (joining); retry in a moment");
  }

  stop(): void {
    clearInterval(this.retry);
    this.unsubscribe();
  }

  private syncWith(id: string): Promise<void> {
    return this.o.node.syncWith(id).then(
      () => {
        if (!this.done) this.o.log.info({ peer: id, ringNodes: this.o.node.ring().size }, "object store: ring and tables exchanged with the cluster; serving S3");
        this.done = true;
      },
      (err: unknown) => this.o.log.debug({ peer: id, err: ThocError.from(err).message }, "object store: sync with a member failed"),
    );
  }
}
