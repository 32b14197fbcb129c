/**
 * The keys of encryption at rest (SSE, sse.ts): the SSE-S3 master key ring
 * and the checks of an SSE-C customer key. No key, wrapped or not, ever goes
 * into an error message or a log line; only key ids (fingerprints of derived
 * keys, which reveal nothing of them) do.
 *
 * SSE-S3: every object (or multipart upload) gets a random 256-bit data key,
 * wrapped with AES-256-GCM under a master key. The master keys are derived
 * (HKDF-SHA256, info "thoc sse-s3 master v1") from the cluster key ring
 * (cluster.keys): the first wraps, every one unwraps, so a cluster key rotates
 * as it does for gossip and peer auth (add the new key first; remove the old
 * one only when no object is wrapped with it any more). Deriving instead of
 * using the cluster key itself keeps the two uses apart: a MAC key of peer
 * auth is never also an encryption key.
 *
 * SSE-C: the customer's key is never stored. The object keeps a random salt
 * and a key check value, HMAC-SHA256(key, salt): unlike S3's MD5 of the key
 * (an unsalted, fast hash of a secret), it is keyed and salted, so a stolen
 * disk gives nothing to look a key up by or to test guesses against faster
 * than AES itself. The object's data key is derived from the customer key and
 * the salt (HKDF, info "thoc sse-c object v1"), so two objects under the same
 * customer key never share a keystream.
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { ThocError } from "../../errors/index.js";
import type { BlobStore, ObjectEncryption } from "../blob/index.js";
import { s3err } from "./errors.js";

const MASTER_INFO = "thoc sse-s3 master v1";
const WRAP_AAD = Buffer.from("thoc sse-s3 data key v1");
const KEY_ID_PREFIX = "thoc sse-s3 key id v1\n";
const CHECK_PREFIX = "thoc sse-c check v1\n";
const OBJECT_INFO = "thoc sse-c object v1";

export const DATA_KEY_BYTES = 32;

interface Master { id: string; key: Buffer }

/** The SSE-S3 master keys, derived from the cluster keys (base64, 32 bytes); the first wraps, all unwrap. */
export class SseKeyRing {
  private readonly masters: Master[];

  constructor(clusterKeys: readonly string[]) {
    this.masters = clusterKeys.map((k) => {
      const ikm = Buffer.from(k, "base64");
      if (ikm.length !== 32) throw new ThocError("invalid_argument", "cluster key must be 32 bytes of base64 (make one with `thoc-node keygen`)", { key: "cluster.keys" });
      const key = Buffer.from(hkdfSync("sha256", ikm, Buffer.alloc(0), MASTER_INFO, 32));
      return { key, id: createHash("sha256").update(KEY_ID_PREFIX).update(key).digest("hex").slice(0, 16) };
    });
  }

  /** Whether SSE-S3 can be served (a node with no cluster key refuses it, see sse.ts). */
  get usable(): boolean { return this.masters.length > 0; }

  /** The id of the key new objects are wrapped with. */
  get currentId(): string | undefined { return this.masters[0]?.id; }

  /** Wraps a data key with the first master key: its id and nonce‖ciphertext‖tag, base64. */
  wrap(dataKey: Buffer): { kid: string; wk: string } {
    const m = this.masters[0];
    if (!m) throw s3err("NotImplemented", "SSE-S3 needs a cluster key (cluster.keys) on this node.");
    const nonce = randomBytes(12);
    const c = createCipheriv("aes-256-gcm", m.key, nonce);
    c.setAAD(WRAP_AAD);
    const ct = Buffer.concat([c.update(dataKey), c.final()]);
    return { kid: m.id, wk: Buffer.concat([nonce, ct, c.getAuthTag()]).toString("base64") };
  }

  /**
   * The data key wrapped under master key `kid`. A key id no longer in the ring
   * (its cluster key was removed before every object was re-wrapped) or a
   * wrapped key that fails authentication is an internal error: the object
   * exists but cannot be read, and the operator (not the client) must act.
   */
  unwrap(kid: string, wk: string): Buffer {
    const m = this.masters.find((x) => x.id === kid);
    if (!m) throw new ThocError("data_loss", `SSE-S3 object wrapped with master key ${kid}, which no cluster key in cluster.keys derives: put the old key back in cluster.keys (after the current first one)`);
    const b = Buffer.from(wk, "base64");
    if (b.length !== 12 + DATA_KEY_BYTES + 16) throw new ThocError("data_loss", `SSE-S3 object: its wrapped data key (master key ${kid}) is malformed`);
    try {
      const d = createDecipheriv("aes-256-gcm", m.key, b.subarray(0, 12));
      d.setAAD(WRAP_AAD);
      d.setAuthTag(b.subarray(12 + DATA_KEY_BYTES));
      return Buffer.concat([d.update(b.subarray(12, 12 + DATA_KEY_BYTES)), d.final()]);
    } catch {
      throw new ThocError("data_loss", `SSE-S3 object: its wrapped data key does not open with master key ${kid} (damaged metadata)`);
    }
  }
}

/** An SSE-C key a request carried, checked against the MD5 it came with. */
export interface CustomerKey {
  key: Buffer;
  /** Base64 MD5 of the key, echoed in responses as S3 does (the client sent it). */
  md5: string;
}

export const SSE_C_PREFIX = "x-amz-server-side-encryption-customer-";
export const COPY_SSE_C_PREFIX = "x-amz-copy-source-server-side-encryption-customer-";

/** Whether a request names SSE-C at all (its headers, or the copy source's). */
export function hasCustomerHeaders(h: IncomingMessage["headers"], prefix: string): boolean {
  // Every request asks (GET and HEAD too): the names are built once per prefix, not per call.
  const n = CUSTOMER_HEADER_NAMES.get(prefix) ?? customerHeaderNames(prefix);
  return h[n[0]] !== undefined || h[n[1]] !== undefined || h[n[2]] !== undefined;
}

const CUSTOMER_HEADER_NAMES = new Map<string, readonly [string, string, string]>();
function customerHeaderNames(prefix: string): readonly [string, string, string] {
  const n = [`${prefix}algorithm`, `${prefix}key`, `${prefix}key-md5`] as const;
  CUSTOMER_HEADER_NAMES.set(prefix, n);
  return n;
}

/**
 * The SSE-C key of a request's headers (prefix SSE_C_PREFIX, or
 * COPY_SSE_C_PREFIX for a copy's source), undefined when none is named.
 * S3's errors and wording: every header is needed, AES256 is the only
 * algorithm, the key is 256 bits and its MD5 must match.
 */
export function parseCustomerKey(h: IncomingMessage["headers"], prefix: string): CustomerKey | undefined {
  if (!hasCustomerHeaders(h, prefix)) return undefined;
  const alg = h[`${prefix}algorithm`], key = h[`${prefix}key`], md5 = h[`${prefix}key-md5`];
  if (typeof alg !== "string") throw s3err("InvalidArgument", "Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm.", { ArgumentName: `${prefix}algorithm` });
  if (alg !== "AES256") throw s3err("InvalidEncryptionAlgorithmError", "The encryption request you specified is not valid. The valid value is AES256.", { ArgumentName: `${prefix}algorithm`, ArgumentValue: alg });
  if (typeof key !== "string" || key === "") throw s3err("InvalidArgument", "Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key.", { ArgumentName: `${prefix}key` });
  const raw = Buffer.from(key, "base64");
  // The value is never echoed: it is the secret.
  if (raw.length !== 32 || raw.toString("base64") !== key.trim()) throw s3err("InvalidArgument", "The secret key was invalid for the specified algorithm.", { ArgumentName: `${prefix}key` });
  if (typeof md5 !== "string" || md5 === "") throw s3err("InvalidArgument", "Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key.", { ArgumentName: `${prefix}key-MD5` });
  const want = createHash("md5").update(raw).digest();
  const got = Buffer.from(md5, "base64");
  if (got.length !== want.length || !timingSafeEqual(got, want)) throw s3err("InvalidArgument", "The calculated MD5 hash of the key did not match the hash that was provided.", { ArgumentName: `${prefix}key-MD5` });
  return { key: raw, md5: want.toString("base64") };
}

/** The key check value stored with an SSE-C object: HMAC-SHA256(key, salt), base64. */
export function keyCheck(key: Buffer, salt: Buffer): string {
  return createHmac("sha256", key).update(CHECK_PREFIX).update(salt).digest("base64");
}

/** Whether `key` is the one an SSE-C object was written with (constant time). */
export function keyMatches(key: Buffer, salt: Buffer, stored: string): boolean {
  const a = Buffer.from(keyCheck(key, salt), "base64"), b = Buffer.from(stored, "base64");
  return a.length === b.length && timingSafeEqual(a, b);
}

/** An SSE-C object's data key: derived from the customer key and the object's salt. */
export function customerDataKey(key: Buffer, salt: Buffer): Buffer {
  return Buffer.from(hkdfSync("sha256", key, salt, OBJECT_INFO, DATA_KEY_BYTES));
}

/** What the S3 server keeps for encryption: the master key ring and the SSE of uploads it has looked up. */
export class SseContext {
  /** bucket, key, uploadId → the upload's sse record (null: not encrypted). An upload's extras never change, so entries never go stale. */
  private readonly uploads = new Map<string, ObjectEncryption | null>();
  constructor(readonly ring: SseKeyRing) {}

  /** The encryption of a multipart upload (NoSuchUpload when there is none): one lookup per upload and S3 server. */
  async uploadSse(store: BlobStore, bucket: string, key: string, uploadId: string): Promise<ObjectEncryption | undefined> {
    const id = `${bucket}\u0000${key}\u0000${uploadId}`;
    const hit = this.uploads.get(id);
    if (hit !== undefined) return hit ?? undefined;
    // Past the last part number: the store lists no part, it only returns the upload.
    const r = await store.listParts(bucket, key, uploadId, { partNumberMarker: 10_000, maxParts: 0 });
    if (this.uploads.size >= 4096) this.uploads.delete(this.uploads.keys().next().value!);
    this.uploads.set(id, r.upload.extras?.sse ?? null);
    return r.upload.extras?.sse;
  }
}
