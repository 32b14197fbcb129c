/**
 * A node joining an existing cluster must not coordinate requests with a ring
 * of only itself (it would acknowledge writes nobody else holds): until it has
 * exchanged the ring with a peer, S3 answers 503. The first node of a cluster
 * (no --join) and a node whose stored ring already lists others start ready.
 * Every join/alive event also starts a ring + table exchange with that member.
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

  constructor(private readonly o: JoinGateOptions) {
    this.done = !o.joining;
    this.unsubscribe = o.membership.subscribe((e) => {
      if (e.member.id === o.self) return;
      if (e.type === "join" || e.type === "alive") {
        o.node.nodeUp();
        void this.syncWith(e.member.id);
      }
    });
    for (const m of o.membership.members()) if (m.id !== o.self && m.state === "alive") void this.syncWith(m.id);
  }

  /** Any exchange that brought in another member (ours, or the periodic ring sync) will do. */
  synced(): boolean {
    return this.done || this.o.ring.state().all().length > 1;
  }

  /** Throws unavailable (S3 503) while joining. */
  check(): void {
    if (!this.synced()) throw blobError("Unavailable", "this node has not received the object store's ring from the cluster yet (joining); retry in a moment");
  }

  stop(): void {
    this.unsubscribe();
  }

  private syncWith(id: string): Promise<void> {
    return this.o.node.syncWith(id).then(
      () => {
        if (!this.done) this.o.log.info({ peer: id, ringNodes: this.o.node.ring().size }, "object store: ring received from the cluster; serving S3");
        this.done = true;
      },
      (err: unknown) => this.o.log.debug({ peer: id, err: ThocError.from(err).message }, "object store: sync with a member failed"),
    );
  }
}
