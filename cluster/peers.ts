/**
 * Calling other agents: one authenticated gRPC client per peer node (found
 * through a PeerDirectory, re-created when the node's address changes), every
 * call signed with the cluster key for that node and that request (auth.ts),
 * and an idle guard for streams:
 * a many-GB body cannot fit a fixed deadline, so a stream is cancelled when
 * no message moves for the timeout instead.
 */
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { ThocError } from "../errors/index.js";
import { createClient, type ChannelCredentials, type Client, type OutgoingCall } from "../rpc/index.js";
import { PEER_AUTH_HEADER, type PeerAuth } from "./auth.js";

/** Where each node's gRPC API is (membership metadata; see view.ts). */
export interface PeerDirectory {
  address(nodeId: string): string | undefined;
}

/** Whether a node counts as up (membership's alive/suspect; see view.ts). */
export interface Liveness {
  isUp(nodeId: string): boolean;
}

/** The metadata hook of a client to node `target` (ClientOptions.metadata): signs each call for that node, its method and request. */
export function signer(auth: PeerAuth, target: string): (call: OutgoingCall) => Record<string, string> {
  return (call) => ({ [PEER_AUTH_HEADER]: auth.sign(call.path, target, call.request) });
}

export interface IdleGuard {
  /** Abort signal for the call: fires on the outer signal or when the stream stalls. */
  readonly signal: AbortSignal;
  /** Progress: restarts the idle timer. */
  touch(): void;
  /** Stops counting while we (not the peer) are the slow side. */
  pause(): void;
  stop(): void;
  timedOut(): boolean;
  /** The error to throw for err: deadline_exceeded when the guard fired, else err wrapped. */
  error(err: unknown): ThocError;
  /** Passes a server stream through: every message is progress; errors come out as error(); the guard stops at the end. */
  stream<T>(src: AsyncIterable<T>): AsyncIterable<T>;
}

/** Runs a stream under an idle deadline: touch() on progress, abort when nothing moved for timeoutMs. */
export function idleGuard(what: string, nodeId: string, timeoutMs: number, outer?: AbortSignal): IdleGuard {
  const ac = new AbortController();
  if (outer?.aborted) ac.abort(outer.reason);
  else outer?.addEventListener("abort", () => ac.abort(outer.reason), { once: true });
  let timer: NodeJS.Timeout | undefined;
  let fired = false;
  const stalled = () => new ThocError("deadline_exceeded", `${what} on ${nodeId}: no progress for ${timeoutMs} ms`, { node: nodeId });
  const touch = () => {
    clearTimeout(timer);
    timer = setTimeout(() => { fired = true; ac.abort(stalled()); }, timeoutMs);
    timer.unref?.();
  };
  touch();
  const error = (err: unknown) => (fired ? stalled() : ThocError.from(err));
  return {
    signal: ac.signal,
    touch,
    pause: () => clearTimeout(timer),
    stop: () => clearTimeout(timer),
    timedOut: () => fired,
    error,
    async *stream<T>(src: AsyncIterable<T>): AsyncIterable<T> {
      try {
        for await (const m of src) {
          touch();
          yield m;
        }
      } catch (err) {
        throw error(err);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

export interface PeerPoolOptions<T extends GenServiceMethods, P> {
  service: GenService<T>;
  directory: PeerDirectory;
  /** Wraps a node's client in the caller's own peer type (which adds signing and deadlines per call). */
  make(nodeId: string, client: Client<T>, address: string): P;
  /** Releases what make() opened beside the client (called when the peer is replaced or the pool closed). */
  drop?(peer: P): void;
  /** How to dial peers: TLS wherever the gRPC API serves TLS (peerCredentials(config.tls)); plaintext otherwise. */
  credentials?: ChannelCredentials;
  /** Signs every call with the cluster key, bound to the node it goes to (see signer). */
  auth?: PeerAuth;
}

/** One client per peer node, re-created when its address changes. */
export class PeerPool<T extends GenServiceMethods, P> {
  private readonly cache = new Map<string, { address: string; peer: P; client: Client<T> }>();

  constructor(private readonly opts: PeerPoolOptions<T, P>) {}

  get(nodeId: string): P {
    const address = this.opts.directory.address(nodeId);
    if (!address) throw new ThocError("unavailable", `no address known for node ${nodeId} (not in the membership view)`, { node: nodeId });
    const hit = this.cache.get(nodeId);
    if (hit?.address === address) return hit.peer;
    hit?.client.close();
    if (hit) this.opts.drop?.(hit.peer);
    const client = createClient(this.opts.service, address, {
      ...(this.opts.credentials ? { credentials: this.opts.credentials } : {}),
      ...(this.opts.auth ? { metadata: signer(this.opts.auth, nodeId) } : {}),
      // Reconnect fast after a peer restarts: the default backoff reaches two minutes.
      channelOptions: { "grpc.initial_reconnect_backoff_ms": 100, "grpc.max_reconnect_backoff_ms": 1000 },
    });
    const peer = this.opts.make(nodeId, client, address);
    this.cache.set(nodeId, { address, peer, client });
    return peer;
  }

  close(): void {
    for (const { client, peer } of this.cache.values()) {
      client.close();
      this.opts.drop?.(peer);
    }
    this.cache.clear();
  }
}
