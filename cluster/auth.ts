/**
 * Authentication of replica calls between agents: an HMAC-SHA256 with the
 * cluster key over (cluster name, method, caller's node id, timestamp, nonce),
 * sent in gRPC metadata. The first key signs and every key verifies, so keys
 * rotate like the gossip key ring. The timestamp bounds replays to ±maxSkew,
 * and a nonce cache refuses a replay inside that window.
 *
 * The MAC covers the call, not its messages (metadata goes out before the
 * body): a man in the middle could tamper with a body, which is what TLS on
 * the gRPC port (tls.caFile) is for. Bodies carry their own sha256 anyway.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { DescService } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { ThocError } from "../errors/index.js";
import type { CallContext, Caller, ServiceImpl } from "../rpc/index.js";

export const PEER_AUTH_HEADER = "x-thoc-peer-auth";
const VERSION = "v1";

export interface PeerAuthOptions {
  clusterName: string;
  /** Base64 32-byte cluster keys; the first signs. */
  keys: readonly string[];
  /** This node's id (who signs). */
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

  private mac(key: Buffer, method: string, node: string, ts: string, nonce: string): Buffer {
    return createHmac("sha256", key).update(`thoc-peer/${VERSION}\n${this.opts.clusterName}\n${method}\n${node}\n${ts}\n${nonce}`).digest();
  }

  /** The metadata value for one call of `method` ("/pkg.Service/Method"). */
  sign(method: string): string {
    const ts = String(this.now());
    const nonce = randomBytes(12).toString("base64url");
    const sig = this.mac(this.keys[0]!, method, this.opts.nodeId, ts, nonce).toString("base64url");
    return `${VERSION}.${ts}.${nonce}.${sig}.${this.opts.nodeId}`;
  }

  /** Returns the caller's node id, or throws unauthenticated. */
  verify(method: string, value: string | undefined): string {
    const fail = (why: string) => new ThocError("unauthenticated", `peer call ${method} refused: ${why}`);
    if (!value) throw fail(`no ${PEER_AUTH_HEADER} metadata (only agents of this cluster may make peer calls)`);
    const parts = value.split(".");
    if (parts.length < 5 || parts[0] !== VERSION) throw fail("malformed authentication");
    const [, ts, nonce, sig] = parts as [string, string, string, string];
    const node = parts.slice(4).join(".");
    const t = Number(ts);
    if (!/^\d{1,16}$/.test(ts) || !nonce || !node) throw fail("malformed authentication");
    const skew = Math.abs(this.now() - t);
    if (skew > this.maxSkewMs) throw fail(`timestamp ${skew} ms away from this node's clock (limit ${this.maxSkewMs} ms; check NTP)`);
    const given = Buffer.from(sig, "base64url");
    const ok = this.keys.some((k) => {
      const want = this.mac(k, method, node, ts, nonce);
      return given.length === want.length && timingSafeEqual(given, want);
    });
    if (!ok) throw fail("bad signature (different cluster key or cluster name?)");
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
    const check = (ctx: CallContext) => {
      const v = ctx.metadata.get(PEER_AUTH_HEADER)[0];
      const node = auth.verify(path, typeof v === "string" ? v : v?.toString());
      auth.checkCaller(ctx.caller, node, path);
      callerOf.set(ctx, node);
    };
    if (m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming") {
      out[m.localName] = async function* (arg: unknown, ctx: CallContext) {
        check(ctx);
        yield* fn.call(impl, arg, ctx) as AsyncIterable<unknown>;
      };
    } else {
      out[m.localName] = async (arg: unknown, ctx: CallContext) => {
        check(ctx);
        return fn.call(impl, arg, ctx);
      };
    }
  }
  return out as ServiceImpl<T>;
}
