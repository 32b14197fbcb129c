/**
 * Encryption at rest (SSE-S3 and SSE-C), done here in the S3 layer so that
 * what the store replicates, and what lies on every replica's disk, is
 * ciphertext: a stolen disk yields ciphertext and wrapped keys.
 *
 * The cipher is AES-256-CTR: ciphertext is exactly as long as plaintext, so
 * the store's sizes, ranges and part offsets stay right, and a range is read
 * by starting the keystream at its block (offset/16) and dropping offset%16
 * bytes, without decrypting from the start. Each object has its own data key
 * (SSE-S3: random, wrapped; SSE-C: derived from the customer key and a random
 * salt; sse-keys.ts) and a random IV. A multipart upload's parts share the
 * upload's key, and each part body gets its own random IV, kept in its
 * PartInfo.sse: a part uploaded twice under one part number (a retry, a
 * client replacing it) must not be encrypted twice with one keystream, which
 * would give away the XOR of the two plaintexts to anyone holding both
 * ciphertexts (a replica keeps the replaced one until it is collected). Parts
 * written before parts had their own IV (no PartInfo.sse) used one derived
 * from (upload IV, n) and are still read with it (partIv). GETs spanning parts
 * switch keystreams at the part boundaries meta.parts gives. CTR has no
 * integrity of its own: corruption at rest is caught by the store's SHA-256
 * of the stored (cipher) bytes; tampering by someone holding the disk is not
 * in this threat model (confidentiality at rest).
 *
 * The store hashes what it stores, the ciphertext; what S3 promises about the
 * plaintext (Content-MD5, x-amz-checksum-*, SSE-S3's ETag = MD5 of the
 * plaintext) is computed and verified here while the body streams, and kept in
 * the object's sse record, which the store writes once the body has ended
 * (PutObjectInput.extras). plaintextView() shows those values to the rest of
 * the S3 layer in place of the store's.
 */
import { createCipheriv, createHash, randomBytes, type Cipher } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { TLSSocket } from "node:tls";
import {
  ALGORITHMS, hasher, recycleReadBuffer, type BlobStore, type BodyExpectations, type ChecksumAlgorithm, type Checksums, type GetObjectOptions,
  type Hasher, type ObjectEncryption, type ObjectMeta, type PartInfo,
} from "../blob/index.js";
import { s3err } from "./errors.js";
import type { Ctx } from "./http.js";
import { COPY_SSE_C_PREFIX, customerDataKey, DATA_KEY_BYTES, hasCustomerHeaders, keyCheck, keyMatches, parseCustomerKey, SSE_C_PREFIX, type CustomerKey, type SseKeyRing } from "./sse-keys.js";

export const SSE_HEADER = "x-amz-server-side-encryption";
const CK = "ck-";

// ---- the cipher ----

/** AES-256-CTR positioned at byte `offset` of the stream that starts with counter `iv` (the whole 128 bits count, as OpenSSL's CTR does). */
export function ctrAt(key: Buffer, iv: Buffer, offset: number): Cipher {
  const counter = Buffer.from(iv);
  let carry = BigInt(Math.floor(offset / 16));
  for (let i = 15; i >= 0 && carry > 0n; i--) {
    const s = BigInt(counter[i]!) + (carry & 0xffn);
    counter[i] = Number(s & 0xffn);
    carry = (carry >> 8n) + (s >> 8n);
  }
  const c = createCipheriv("aes-256-ctr", key, counter);
  if (offset % 16) c.update(Buffer.alloc(offset % 16));
  return c;
}

/**
 * The IV parts written before parts had their own (format v1) used: derived
 * from (upload IV, n), so the same for every upload of part n. Only read now.
 */
export function partIv(uploadIv: Buffer, partNumber: number): Buffer {
  return createHash("sha256").update("thoc sse part iv v1\n").update(uploadIv).update(`\n${partNumber}`).digest().subarray(0, 16);
}

/** A part's IV: its own random one (PartInfo.sse, base64), else the v1 one derived from the upload's. */
export function ivOfPart(p: Pick<PartInfo, "partNumber" | "sse">, uploadIv: Buffer): Buffer {
  if (p.sse === undefined) return partIv(uploadIv, p.partNumber);
  const iv = Buffer.from(p.sse, "base64");
  if (iv.length !== 16) throw s3err("InternalError", `Part ${p.partNumber} of an encrypted object has a malformed IV.`);
  return iv;
}

export interface Segment { start: number; size: number; iv: Buffer }

/** The keystream segments of an object: one for a single PUT, one per part for a multipart object. */
export function segmentsOf(meta: Pick<ObjectMeta, "size" | "parts" | "sse">, iv: Buffer): Segment[] {
  if (!meta.sse?.mp) return [{ start: 0, size: meta.size, iv }];
  if (!meta.parts) throw s3err("InternalError", "An encrypted multipart object was read without its part list.");
  const out: Segment[] = [];
  let start = 0;
  for (const p of meta.parts) {
    out.push({ start, size: p.size, iv: ivOfPart(p, iv) });
    start += p.size;
  }
  return out;
}

/** En- or decrypts (CTR is symmetric) a body holding the object's bytes from `start` on. */
export async function* cryptStream(body: AsyncIterable<Uint8Array>, key: Buffer, segs: Segment[], start: number): AsyncGenerator<Uint8Array> {
  let i = segs.findIndex((s) => start < s.start + s.size);
  let pos = start;
  let c = i >= 0 ? ctrAt(key, segs[i]!.iv, pos - segs[i]!.start) : undefined;
  for await (const chunk of body) {
    let off = 0;
    while (off < chunk.length) {
      const seg = segs[i];
      if (!seg || !c) throw s3err("InternalError", "The stored object is longer than its metadata says.");
      const n = Math.min(chunk.length - off, seg.start + seg.size - pos);
      if (n > 0) {
        yield c.update(chunk.subarray(off, off + n));
        off += n;
        pos += n;
      }
      if (pos >= seg.start + seg.size) {
        i++;
        while (i < segs.length && segs[i]!.size === 0) i++;
        c = i < segs.length ? ctrAt(key, segs[i]!.iv, 0) : undefined;
      }
    }
    // Every byte went through the cipher (a copy): a read buffer of the store can go back to its pool.
    recycleReadBuffer(chunk);
  }
}

// ---- what a request asks for ----

/** Refuses SSE-C over plain HTTP unless s3.sseCustomerKeysOverHttp (the key would cross the network in the clear). */
function customerKey(ctx: Ctx, prefix: string, h: IncomingMessage["headers"] = ctx.req.headers): CustomerKey | undefined {
  if (!hasCustomerHeaders(h, prefix)) return undefined;
  if (!(ctx.req.socket as TLSSocket).encrypted && !ctx.config.s3.sseCustomerKeysOverHttp) {
    throw s3err("InvalidRequest", "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection.");
  }
  return parseCustomerKey(h, prefix);
}

/** What a write asks for: SSE-C with a key, SSE-S3, or nothing. */
export type SseRequest = { mode: "SSE-C"; ck: CustomerKey } | { mode: "SSE-S3" };

/** Whether a request carries any SSE header (a copy onto itself that changes encryption is allowed). */
export function hasSseHeaders(h: IncomingMessage["headers"]): boolean {
  return h[SSE_HEADER] !== undefined || hasCustomerHeaders(h, SSE_C_PREFIX);
}

/**
 * The encryption a PutObject, CopyObject (destination),
 * CreateMultipartUpload or POST Object (its form fields as `h`) asks for: its
 * headers, else the bucket's default encryption. SSE-KMS is refused as
 * NotImplemented.
 */
export async function writeRequest(ctx: Ctx, h: IncomingMessage["headers"] = ctx.req.headers): Promise<SseRequest | undefined> {
  const ck = customerKey(ctx, SSE_C_PREFIX, h);
  const sse = h[SSE_HEADER];
  if (h["x-amz-server-side-encryption-aws-kms-key-id"] !== undefined || h["x-amz-server-side-encryption-context"] !== undefined || sse === "aws:kms" || sse === "aws:kms:dsse") {
    throw s3err("NotImplemented", "SSE-KMS (aws:kms) is not supported by this store: use SSE-S3 (x-amz-server-side-encryption: AES256) or SSE-C.");
  }
  if (sse !== undefined && sse !== "AES256") throw s3err("InvalidArgument", "The encryption method specified is not supported", { ArgumentName: SSE_HEADER, ArgumentValue: String(sse) });
  if (ck && sse !== undefined) throw s3err("InvalidArgument", "Server Side Encryption with Customer provided key is incompatible with the encryption method specified", { ArgumentName: SSE_HEADER, ArgumentValue: String(sse) });
  if (ck) return { mode: "SSE-C", ck };
  if (sse === "AES256") return { mode: "SSE-S3" };
  const def = await ctx.store.getBucketConfig(ctx.bucket!, "encryption");
  return def?.algorithm === "AES256" ? { mode: "SSE-S3" } : undefined;
}

/** Response headers that say how an object is encrypted. */
export function sseHeaders(mode: ObjectEncryption["mode"], ck?: CustomerKey): Record<string, string> {
  if (mode === "SSE-S3") return { [SSE_HEADER]: "AES256" };
  return { [`${SSE_C_PREFIX}algorithm`]: "AES256", [`${SSE_C_PREFIX}key-MD5`]: ck!.md5 };
}

/**
 * CompleteMultipartUpload's encryption headers, from the upload's (or the
 * object's) sse record: known before the completion starts, so an early
 * keep-alive 200 carries them too. SSE-C: the algorithm, and the key's MD5
 * when the request carries the upload's key (Complete need not carry it; a
 * key it carries is not otherwise checked, as before).
 */
export function completeSseHeaders(ctx: Ctx, sse: ObjectEncryption | undefined): Record<string, string> {
  if (!sse) return {};
  if (sse.mode === "SSE-S3") return sseHeaders("SSE-S3");
  const out: Record<string, string> = { [`${SSE_C_PREFIX}algorithm`]: "AES256" };
  let ck: CustomerKey | undefined;
  try {
    ck = customerKey(ctx, SSE_C_PREFIX);
  } catch {
    ck = undefined;
  }
  if (ck && keyMatches(ck.key, Buffer.from(String(sse.salt), "base64"), String(sse.kcv))) out[`${SSE_C_PREFIX}key-MD5`] = ck.md5;
  return out;
}

/** Fresh key material for a new object or upload: its sse record (what the store keeps) and its data key and IV. */
export function newEncryption(ring: SseKeyRing, req: SseRequest, multipart: boolean): { sse: ObjectEncryption; key: Buffer; iv: Buffer } {
  const iv = randomBytes(16);
  let sse: ObjectEncryption, key: Buffer;
  if (req.mode === "SSE-S3") {
    key = randomBytes(DATA_KEY_BYTES);
    sse = { mode: "SSE-S3", alg: "AES256", iv: iv.toString("base64"), ...ring.wrap(key) };
  } else {
    const salt = randomBytes(16);
    key = customerDataKey(req.ck.key, salt);
    sse = { mode: "SSE-C", alg: "AES256", iv: iv.toString("base64"), salt: salt.toString("base64"), kcv: keyCheck(req.ck.key, salt) };
  }
  if (multipart) sse.mp = true;
  return { sse, key, iv };
}

/**
 * The data key and IV of a stored object or upload, given the SSE-C key the
 * request carried (prefix: the object's own headers or the copy source's).
 * S3's answers: no key for an SSE-C object → 400 InvalidRequest, the wrong key
 * → 403 AccessDenied, a key for an object not under SSE-C → 400.
 */
export function openEncryption(ctx: Ctx, sse: ObjectEncryption | undefined, prefix = SSE_C_PREFIX): { key: Buffer; iv: Buffer; headers: Record<string, string> } | undefined {
  const ck = customerKey(ctx, prefix);
  if (sse?.mode !== "SSE-C" && ck) throw s3err("InvalidRequest", "The encryption parameters are not applicable to this object.");
  if (!sse) return undefined;
  const iv = Buffer.from(String(sse.iv), "base64");
  if (sse.mode === "SSE-S3") return { key: ctx.sse.ring.unwrap(String(sse.kid), String(sse.wk)), iv, headers: sseHeaders("SSE-S3") };
  if (!ck) throw s3err("InvalidRequest", "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.");
  const salt = Buffer.from(String(sse.salt), "base64");
  if (!keyMatches(ck.key, salt, String(sse.kcv))) throw s3err("AccessDenied", "The provided customer key does not match the key the object was encrypted with.");
  return { key: customerDataKey(ck.key, salt), iv, headers: sseHeaders("SSE-C", ck) };
}

/** A reader of an encrypted object for GET, HEAD and copies: its response headers, and its body decrypted from `start`. */
export interface SseReader {
  headers: Record<string, string>;
  decrypt(meta: ObjectMeta, body: AsyncIterable<Uint8Array>, start: number): AsyncIterable<Uint8Array>;
}

export function sseReader(ctx: Ctx, meta: ObjectMeta, prefix = SSE_C_PREFIX): SseReader | undefined {
  const open = openEncryption(ctx, meta.sse, prefix);
  if (!open) return undefined;
  return {
    headers: open.headers,
    decrypt(m, body, start) {
      // The body read may be a newer version than the metadata first looked at (overwritten meanwhile): open its own key.
      const o = m.sse === meta.sse ? open : openEncryption(ctx, m.sse, prefix);
      if (!o) return body;
      return cryptStream(body, o.key, segmentsOf(m, o.iv), start);
    },
  };
}

// ---- writing: plaintext digests, verified here ----

/** MD5 and the checksums asked for, computed on the plaintext; verified against what the client promised once the body has ended. */
class PlainDigests {
  private readonly md5 = hasher("md5");
  private readonly hashers: [ChecksumAlgorithm, Hasher][];
  constructor(private readonly expect: BodyExpectations) {
    const algs = new Set<ChecksumAlgorithm>([...(Object.keys(expect.checksums ?? {}) as ChecksumAlgorithm[]), ...(expect.computeChecksums ?? [])]);
    this.hashers = [...algs].map((a) => [a, hasher(a)]);
  }

  update(c: Uint8Array): void {
    this.md5.update(c);
    for (const [, h] of this.hashers) h.update(c);
  }

  /** Throws BadDigest (before the body ends, so the store commits nothing) when a promise fails. */
  finish(): { etag: string; checksums: Checksums } {
    const md5 = this.md5.digest();
    if (this.expect.md5 !== undefined && this.expect.md5 !== md5) throw s3err("BadDigest", "The Content-MD5 you specified did not match what we received.");
    const checksums: Checksums = {};
    for (const [a, h] of this.hashers) checksums[a] = h.digest();
    // Read now: a trailer's value arrives with the end of the body (body.ts).
    for (const [a, v] of Object.entries(this.expect.checksums ?? {}) as [ChecksumAlgorithm, string][]) {
      if (checksums[a] !== v) throw Object.assign(s3err("BadDigest", `The ${a.toUpperCase()} you specified did not match the calculated checksum.`), { details: { algorithm: a } });
    }
    return { etag: Buffer.from(md5, "base64").toString("hex"), checksums };
  }
}

export interface Sealed {
  /** The ciphertext, for the store. */
  body: AsyncIterable<Uint8Array>;
  /** What the store is to check of the ciphertext: its length only. */
  expect: BodyExpectations;
  /** The plaintext's digests, once the body has ended. */
  digests(): { etag: string; checksums: Checksums };
}

/**
 * Encrypts a plaintext body for the store, checking the client's promises on
 * the plaintext. With `record`, the plaintext checksums (and, for SSE-S3, the
 * ETag) are written into that sse record as the body ends, before the store
 * writes the object's metadata.
 */
export function seal(plain: AsyncIterable<Uint8Array>, key: Buffer, iv: Buffer, expect: BodyExpectations, record?: ObjectEncryption): Sealed {
  const d = new PlainDigests(expect);
  let result: { etag: string; checksums: Checksums } | undefined;
  const body = (async function* () {
    const c = ctrAt(key, iv, 0);
    for await (const chunk of plain) {
      d.update(chunk);
      yield c.update(chunk);
    }
    result = d.finish();
    if (record) {
      if (record.mode === "SSE-S3" && !record.mp) record.etag = result.etag;
      for (const [a, v] of Object.entries(result.checksums)) record[CK + a] = v;
    }
  })();
  return {
    body,
    expect: expect.size !== undefined ? { size: expect.size } : {},
    digests() {
      if (!result) throw s3err("InternalError", "The body's digests were asked for before it ended.");
      return result;
    },
  };
}

// ---- the plaintext view of the store's metadata ----

/** An object's metadata as clients see it: SSE-S3's ETag is the plaintext's MD5, and checksums are the plaintext's. */
export function plaintextMeta(meta: ObjectMeta): ObjectMeta {
  const s = meta.sse;
  if (!s) return meta;
  const checksums: Checksums = {};
  for (const a of ALGORITHMS) if (typeof s[CK + a] === "string") checksums[a] = s[CK + a] as string;
  return { ...meta, etag: typeof s.etag === "string" ? s.etag : meta.etag, checksums };
}

/**
 * The store as the S3 handlers use it: every object metadata it returns is
 * plaintextMeta()'s, so conditional requests, listings and responses see
 * S3's values without each handler knowing about encryption. Methods not
 * named here pass through (a new one that returns object metadata belongs here).
 */
export function plaintextView(store: BlobStore): BlobStore {
  const view = {
    headObject: async (...a: Parameters<BlobStore["headObject"]>) => plaintextMeta(await store.headObject(...a)),
    putObject: async (input: Parameters<BlobStore["putObject"]>[0]) => plaintextMeta(await store.putObject(input)),
    getObject: async (bucket: string, key: string, opts?: GetObjectOptions) => {
      const prepare = opts?.prepare;
      const got = await store.getObject(bucket, key, prepare ? { ...opts, prepare: (m) => prepare(plaintextMeta(m)) } : opts);
      return { ...got, meta: plaintextMeta(got.meta) };
    },
    listObjects: async (input: Parameters<BlobStore["listObjects"]>[0]) => {
      const r = await store.listObjects(input);
      return { ...r, objects: r.objects.map(plaintextMeta) };
    },
    listObjectVersions: async (input: Parameters<BlobStore["listObjectVersions"]>[0]) => {
      const r = await store.listObjectVersions(input);
      return { ...r, versions: r.versions.map((v) => ({ ...plaintextMeta(v), versionId: v.versionId, isLatest: v.isLatest })) };
    },
    completeMultipartUpload: async (...a: Parameters<BlobStore["completeMultipartUpload"]>) => plaintextMeta(await store.completeMultipartUpload(...a)),
    updateObjectMeta: async (...a: Parameters<BlobStore["updateObjectMeta"]>) => plaintextMeta(await store.updateObjectMeta(...a)),
  };
  // Bound once per method, not on every call (every request goes through here several times).
  const bound = new Map<string | symbol, unknown>();
  return new Proxy(store, {
    get(target, prop) {
      if (Object.hasOwn(view, prop)) return view[prop as keyof typeof view];
      const v = Reflect.get(target, prop, target) as unknown;
      if (typeof v !== "function") return v;
      let f = bound.get(prop);
      if (f === undefined) bound.set(prop, f = (v as (...a: unknown[]) => unknown).bind(target));
      return f;
    },
  });
}

/**
 * The upload's encryption for one body of one of its parts (UploadPart,
 * UploadPartCopy): the upload's key (every part carries the same SSE-C key)
 * and a fresh random IV, which the part keeps as its PartInfo.sse (`ivField`,
 * given to the store in BodyExpectations.sse).
 */
export async function partEncryption(ctx: Ctx, uploadId: string): Promise<{ key: Buffer; iv: Buffer; ivField: string; headers: Record<string, string> } | undefined> {
  const sse = await ctx.sse.uploadSse(ctx.store, ctx.bucket!, ctx.key!, uploadId);
  if (sse?.mode === "SSE-C" && !hasCustomerHeaders(ctx.req.headers, SSE_C_PREFIX)) {
    throw s3err("InvalidRequest", "The multipart upload initiate requested encryption. Subsequent part requests must include the appropriate encryption parameters.");
  }
  const open = openEncryption(ctx, sse);
  if (!open) return undefined;
  const iv = randomBytes(16);
  return { ...open, iv, ivField: iv.toString("base64") };
}

export { COPY_SSE_C_PREFIX, SSE_C_PREFIX };

/** A new object's (or copy's) body sealed under fresh key material, its sse record and the response headers. */
export function sealNew(ctx: Ctx, req: SseRequest, plain: AsyncIterable<Uint8Array>, expect: BodyExpectations): Sealed & { sse: ObjectEncryption; headers: Record<string, string> } {
  const n = newEncryption(ctx.sse.ring, req, false);
  return { ...seal(plain, n.key, n.iv, expect, n.sse), sse: n.sse, headers: sseHeaders(req.mode, req.mode === "SSE-C" ? req.ck : undefined) };
}
