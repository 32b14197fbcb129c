/**
 * Short-lived tokens for the VNC console: VmService.GetVncToken hands one out
 * (to an operator, over the authenticated gRPC API), and the VNC WebSocket
 * (vm.vncPort) accepts it once, for the VM it was made for, until it expires
 * (60 s). The token is the only credential the WebSocket checks, which is
 * why it is single use, short-lived and sent over wss:// whenever the agent
 * has TLS (vnc-proxy.ts): a token seen on the wire is spent or stale.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";

export class VncTokens {
  private readonly tokens = new Map<string, { vm: string; expiresAt: number }>();
  constructor(private readonly baseUrl: () => string, private readonly ttlMs = 60_000, private readonly now: () => number = Date.now) {}

  issue(vm: string): { token: string; url: string; expiresAt: number } {
    this.sweep();
    const token = randomBytes(24).toString("base64url");
    const expiresAt = this.now() + this.ttlMs;
    this.tokens.set(token, { vm, expiresAt });
    return { token, expiresAt, url: `${this.baseUrl()}/vnc/${encodeURIComponent(vm)}?token=${token}` };
  }

  /** True once for a live token of this VM; the token is spent either way. */
  redeem(vm: string, token: string): boolean {
    this.sweep();
    for (const [t, v] of this.tokens) {
      const a = Buffer.from(t), b = Buffer.from(token);
      if (a.length === b.length && timingSafeEqual(a, b)) {
        this.tokens.delete(t);
        return v.vm === vm && v.expiresAt > this.now();
      }
    }
    return false;
  }

  private sweep(): void {
    const now = this.now();
    for (const [t, v] of this.tokens) if (v.expiresAt <= now) this.tokens.delete(t);
  }
}
