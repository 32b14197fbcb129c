/**
 * Short-lived tokens for the VNC console: VmService hands one out, the VNC
 * WebSocket on the admin HTTP port accepts it once, for one VM, until it expires.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";

export class VncTokens {
  private readonly tokens = new Map<string, { vm: string; expiresAt: number }>();
  constructor(private readonly baseUrl: () => string, private readonly ttlMs = 60_000) {}

  issue(vm: string): { token: string; url: string; expiresAt: number } {
    this.sweep();
    const token = randomBytes(24).toString("base64url");
    const expiresAt = Date.now() + this.ttlMs;
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
        return v.vm === vm && v.expiresAt > Date.now();
      }
    }
    return false;
  }

  private sweep(): void {
    const now = Date.now();
    for (const [t, v] of this.tokens) if (v.expiresAt <= now) this.tokens.delete(t);
  }
}
