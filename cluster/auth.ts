/**
 * Authentication of replica calls between agents: an HMAC-SHA256 with the
 * cluster key over (cluster name, method, caller's node id, target node id,
 * timestamp, nonce, sha256 of the request), sent in gRPC metadata. The first
 * key signs and every key verifies, so keys rotate like the gossip key ring.
 * The timestamp bounds replays to ±maxSkew, and a nonce cache refuses a
 * replay inside that window on the node it was meant for.
 *
 * Why the target and the request are in the MAC (v2): with v1's MAC over the
 * call alone, a header seen on the wire (plaintext gRPC) could be replayed
 * within the window to another node, or with another body: a SyncTable push
 * that injected an S3 key into the s3keys table, which then spread to every
 * node. Now a header is good for one node, one method and one request.
 *
 * What the digest covers: the one request message of unary and
 * server-streaming calls, as the bytes on the wire (the server hashes what it
 * received, not a re-encoding, so a newer peer's unknown fields still match).
 * Client- and bidi-streaming calls (PutReplica) are bound to target and method
 * only: metadata goes out before their messages, so their bodies are protected
 * by TLS on the gRPC port (and a replica body by its own size and sha256 in
 * the trailer), not by this MAC.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { DescService } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { ThocError } from "../errors/index.js";
import { pooledRandomBytes, requestBytes, type CallContext, type Caller, type ServiceImpl } from "../rpc/index.js";

export const PEER_AUTH_HEADER = "x-thoc-peer-auth";
const VERSION = "v2";
/** What the MAC says of a streamed request: bound to target and method only (see the top of this file). */
const STREAMED = "stream";

export interface PeerAuthOptions {
  clusterName: string;
  /** Base64 32-byte cluster keys; the first signs. */
  keys: readonly string[];
  /** This node's id: who signs, and the only target this node accepts calls for. */
  nodeId: string;
  /** Calls signed further than this from our clock are refused. */
  maxSkewMs?: number;
  now?: () => number;
  /**
   * Checks the transport's identity against the node id the MAC claims
   * (cluster PKI: a node certificate with that id, not removed); throws to refuse.
   */
  checkCaller?: (caller: Caller, claimedNodeId: string, method: string) => void;
}

export class PeerAuth {
  private readonly keys: Buffer[];
  private readonly maxSkewMs: number;
  private readonly now: () => number;
  /** nonce → expiry; a nonce seen within the window is a replay. */
  private readonly seen = new Map<string, number>();

  constructor(private readonly opts: PeerAuthOptions) {
    if (opts.keys.length === 0) throw new ThocError("invalid_argument", "no cluster key: set cluster.keys (thoc-node keygen makes one)", { key: "cluster.keys" });
    this.keys = opts.keys.map((k) => {
      const b = Buffer.from(k, "base64");
      if (b.length !== 32) throw new ThocError("invalid_argument", "cluster key must be 32 bytes of base64 (make one with `thoc-node keygen`)", { key: "cluster.keys" });
      return b;
    });
    this.maxSkewMs = opts.maxSkewMs ?? 60_000;
    this.now = opts.now ?? Date.now;
  }

  private mac(key: Buffer, method: string, caller: string, target: string, ts: string, nonce: string, digest: string): Buffer {
    return createHmac("sha256", key)
      .update(`thoc-peer/${VERSION}\n${this.opts.clusterName}\n${method}\n${caller}\n${target}\n${ts}\n${nonce}\n${digest}`)
      .digest();
  }

  /**
   * The metadata value for one call of `method` ("/pkg.Service/Method") to
   * node `target`; `request` is the serialized request of a unary or
   * server-streaming call, undefined for a streamed request.
   */
  sign(method: string, target: string, request?: Uint8Array): string {
    const ts = String(this.now());
    const nonce = pooledRandomBytes(12).toString("base64url");
    const sig = this.mac(this.keys[0]!, method, this.opts.nodeId, target, ts, nonce, requestDigest(request)).toString("base64url");
    return `${VERSION}.${ts}.${nonce}.${Buffer.from(target).toString("base64url")}.${sig}.${this.opts.nodeId}`;
  }

  /**
   * Returns the caller's node id, or throws unauthenticated. `request` is what
   * this node received (undefined for streamed requests): the server, not the
   * header, decides whether a body is bound, so a header cannot opt out.
   */
  verify(method: string, value: string | undefined, request?: Uint8Array): string {
    const fail = (why: string) => new ThocError("unauthenticated", `peer call ${method} refused: ${why}`);
    if (!value) throw fail(`no ${PEER_AUTH_HEADER} metadata (only agents of this cluster may make peer calls)`);
    const parts = value.split(".");
    if (parts[0] !== VERSION) throw fail(`authentication version ${JSON.stringify((parts[0] ?? "").slice(0, 8))}, this node speaks ${VERSION} (is the caller an older thoc-node? upgrade every node)`);
    if (parts.length < 6) throw fail("malformed authentication");
    const [, ts, nonce, target64, sig] = parts as [string, string, string, string, string];
    const node = parts.slice(5).join(".");
    const t = Number(ts);
    if (!/^\d{1,16}$/.test(ts) || !nonce || !node) throw fail("malformed authentication");
    const target = Buffer.from(target64, "base64url").toString();
    // Checked before the MAC only to say what went wrong: the MAC below is over our own id, not this field.
    if (target !== this.opts.nodeId) throw fail(`signed for node ${JSON.stringify(target.slice(0, 64))}, this is node ${this.opts.nodeId} (a replayed call, or a stale address for that node)`);
    const skew = Math.abs(this.now() - t);
    if (skew > this.maxSkewMs) throw fail(`timestamp ${skew} ms away from this node's clock (limit ${this.maxSkewMs} ms; check NTP)`);
    const given = Buffer.from(sig, "base64url");
    const digest = requestDigest(request);
    const ok = this.keys.some((k) => {
      const want = this.mac(k, method, node, this.opts.nodeId, ts, nonce, digest);
      return given.length === want.length && timingSafeEqual(given, want);
    });
    if (!ok) throw fail("bad signature (different cluster key or cluster name, or a request that is not the one signed)");
    this.sweep();
    if (this.seen.has(nonce)) throw fail("replayed call");
    this.seen.set(nonce, t + this.maxSkewMs);
    return node;
  }

  /** The transport-identity hook (PeerAuthOptions.checkCaller); a no-op without one. */
  checkCaller(caller: Caller, claimedNodeId: string, method: string): void {
    this.opts.checkCaller?.(caller, claimedNodeId, method);
  }

  private sweep(): void {
    if (this.seen.size < 4096) return;
    const now = this.now();
    for (const [n, exp] of this.seen) if (exp < now - this.maxSkewMs) this.seen.delete(n);
  }
}

function requestDigest(request: Uint8Array | undefined): string {
  return request ? createHash("sha256").update(request).digest("hex") : STREAMED;
}

export function methodPath(svc: DescService, localName: string): string {
  const m = svc.methods.find((x) => x.localName === localName);
  if (!m) throw new ThocError("internal", `${svc.typeName} has no method ${localName}`);
  return `/${svc.typeName}/${m.name}`;
}

/** The caller a peer call was authenticated as (set by `authenticated`). */
export const callerOf = new WeakMap<CallContext, string>();

/** Wraps every method of an implementation with peer authentication. */
export function authenticated<T extends GenServiceMethods>(svc: GenService<T>, impl: ServiceImpl<T>, auth: PeerAuth): ServiceImpl<T> {
  const desc = svc as unknown as DescService;
  const out: Record<string, unknown> = {};
  for (const m of desc.methods) {
    const fn = (impl as Record<string, (...a: unknown[]) => unknown>)[m.localName]!;
    const path = `/${desc.typeName}/${m.name}`;
    // One request message (unary, server streaming): the MAC must cover the bytes received.
    const single = m.methodKind === "unary" || m.methodKind === "server_streaming";
    const check = (ctx: CallContext, arg: unknown) => {
      const v = ctx.metadata.get(PEER_AUTH_HEADER)[0];
      // A single request we hold no bytes for is verified against the empty request: fails closed.
      const body = single ? requestBytes(arg) ?? new Uint8Array(0) : undefined;
      const node = auth.verify(path, typeof v === "string" ? v : v?.toString(), body);
      auth.checkCaller(ctx.caller, node, path);
      callerOf.set(ctx, node);
    };
    if (m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming") {
      out[m.localName] = async function* (arg: unknown, ctx: CallContext) {
        check(ctx, arg);
        yield* fn.call(impl, arg, ctx) as AsyncIterable<unknown>;
      };
    } else {
      out[m.localName] = async (arg: unknown, ctx: CallContext) => {
        check(ctx, arg);
        return fn.call(impl, arg, ctx);
      };
    }
  }
  return out as ServiceImpl<T>;
}
