/**
 * Join tokens: `thoc1.<id>.<secret>.<ca-sha256>`. The CA fingerprint lets a
 * new node check the cluster it reaches before trusting it (as kubeadm's
 * --discovery-token-ca-cert-hash); the secret is the one-time credential. The
 * CA holder keeps only the secret's sha256, the expiry and whether it was used,
 * in its local store; use is checked and recorded under one lock, so two joins
 * racing with one token cannot both win.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { ThocError } from "../errors/index.js";
import type { LocalStore } from "../store/index.js";

const PREFIX = "thoc1";
export const DEFAULT_TOKEN_TTL_MS = 3_600_000;

export interface ParsedToken { id: string; secret: string; caFingerprint: string }

export function formatToken(t: ParsedToken): string {
  return `${PREFIX}.${t.id}.${t.secret}.${t.caFingerprint}`;
}

/** Parses a token; the error never repeats the token (it is a secret). */
export function parseToken(token: string): ParsedToken {
  const parts = token.trim().split(".");
  const [p, id, secret, fp] = parts;
  if (parts.length !== 4 || p !== PREFIX || !/^[0-9a-f]{16}$/.test(id!) || !/^[A-Za-z0-9_-]{32}$/.test(secret!) || !/^[0-9a-f]{64}$/.test(fp!)) {
    throw new ThocError("invalid_argument", "join token is malformed: expected thoc1.<id>.<secret>.<ca-sha256> as `thoc-node cluster token create` prints it");
  }
  return { id: id!, secret: secret!, caFingerprint: fp! };
}

interface StoredToken { hash: string; expiresAt: number; createdAt: number; usedAt?: number; usedBy?: string }

const sha = (s: string) => createHash("sha256").update(s).digest("hex");

export class JoinTokens {
  private lock: Promise<unknown> = Promise.resolve();
  constructor(private readonly store: LocalStore, private readonly now: () => number = Date.now) {}

  private sub() {
    return this.store.json<StoredToken>("pki-join-tokens");
  }

  /** Durable before it returns (fsync): a token handed out or spent must survive a crash. */
  private async put(id: string, v: StoredToken): Promise<void> {
    await this.store.db.batch([{ type: "put" as const, sublevel: this.sub(), key: id, value: v }], { sync: true });
  }

  async create(caFingerprint: string, ttlMs: number): Promise<{ token: string; id: string; expiresAt: number }> {
    const t: ParsedToken = { id: randomBytes(8).toString("hex"), secret: randomBytes(24).toString("base64url"), caFingerprint };
    const expiresAt = this.now() + ttlMs;
    await this.put(t.id, { hash: sha(t.secret), expiresAt, createdAt: this.now() });
    return { token: formatToken(t), id: t.id, expiresAt };
  }

  /** Checks the token and marks it used, atomically; throws permission_denied naming the token id and why. */
  consume(token: ParsedToken, by: string): Promise<void> {
    const run = this.lock.then(async () => {
      const sub = this.sub();
      const s = await sub.get(token.id);
      const want = s ? Buffer.from(s.hash, "hex") : undefined;
      const got = Buffer.from(sha(token.secret), "hex");
      if (!s || !want || !timingSafeEqual(want, got)) throw new ThocError("permission_denied", `join token ${token.id} is not known to this cluster's CA (mistyped, or made for another cluster)`);
      if (s.usedAt) throw new ThocError("permission_denied", `join token ${token.id} was already used (at ${new Date(s.usedAt).toISOString()}): tokens are one-time, make a new one with \`thoc-node cluster token create\``);
      if (this.now() > s.expiresAt) throw new ThocError("permission_denied", `join token ${token.id} expired at ${new Date(s.expiresAt).toISOString()}: make a new one with \`thoc-node cluster token create\``);
      await this.put(token.id, { ...s, usedAt: this.now(), usedBy: by });
    });
    this.lock = run.catch(() => {});
    return run;
  }
}
