/**
 * A request body as the blob store gets it: read from the socket with an idle
 * timeout and byte counting, aws-chunked frames decoded and their signatures
 * checked, the payload SHA-256 verified at the end (throwing before the
 * stream ends, so nothing bad is committed), and the expectations (size,
 * Content-MD5, header and trailer checksums) the store verifies. Nothing is
 * hashed twice: a trailer's value, and the signed SHA-256 when a SHA-256
 * checksum is asked for anyway, become expected checksums the store checks
 * against the digests it computes.
 */
import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { ALGORITHMS, blobCodeOf, hasher, parseAlgorithm, validDigest, type BodyExpectations, type ChecksumAlgorithm, type Checksums } from "../blob/index.js";
import { ChunkedDecoder } from "./chunked.js";
import { S3Error, s3err } from "./errors.js";
import { STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER, type AuthResult } from "./sigv4.js";

const MAX_SINGLE_PUT = 5 * 1024 ** 3;

/** Bytes queued from the socket before it is paused, and the level at which it is resumed. */
const QUEUE_HIGH = 1 << 20;
const QUEUE_LOW = 256 << 10;

/** Per-chunk and end-of-body checks of a plain (not aws-chunked) body, run as the consumer takes it. */
interface BodyCheck { chunk(c: Uint8Array): void; end(): void }

/**
 * Raw bytes off the socket, as an async iterator driven by 'data' events: no
 * async generator, timer or Promise.race per chunk (each ~64 KiB socket read
 * otherwise cost several promise hops, a measurable share of a PUT's CPU).
 * Up to QUEUE_HIGH bytes are queued before the request is paused.
 * RequestTimeout when the client sends nothing for idleMs while we wait for
 * it (a slow consumer does not count); IncompleteBody when it goes away.
 */
export class SocketBody implements AsyncIterableIterator<Buffer> {
  private readonly queue: Buffer[] = [];
  private head = 0;
  private queued = 0;
  private paused = false;
  private ended = false;
  private finished = false;
  private error?: unknown;
  private waiter?: { resolve: (r: IteratorResult<Buffer>) => void; reject: (e: unknown) => void };
  private timer?: NodeJS.Timeout;

  constructor(private readonly req: IncomingMessage, private readonly idleMs: number, private readonly count: (n: number) => void, private readonly check?: BodyCheck) {}

  [Symbol.asyncIterator](): this {
    return this;
  }

  private start(): void {
    this.timer = setTimeout(this.onIdle, this.idleMs);
    this.req.on("data", this.onData);
    this.req.on("end", this.onEnd);
    this.req.on("error", this.onError);
    this.req.on("close", this.onClose);
  }

  private readonly onData = (c: Buffer): void => {
    this.count(c.length);
    this.timer?.refresh();
    this.queue.push(c);
    this.queued += c.length;
    if (this.queued >= QUEUE_HIGH && !this.paused) {
      this.paused = true;
      this.req.pause();
    }
    this.settle();
  };

  private readonly onEnd = (): void => {
    this.ended = true;
    clearTimeout(this.timer);
    this.settle();
  };

  private readonly onError = (err: Error & { code?: string }): void => {
    this.error ??= err.code === "ECONNRESET" || err.message === "aborted" ? s3err("IncompleteBody") : err;
    this.settle();
  };

  private readonly onClose = (): void => {
    if (!this.ended) this.error ??= s3err("IncompleteBody");
    this.settle();
  };

  private readonly onIdle = (): void => {
    if (this.ended || this.finished) return;
    // Bytes still queued, a paused socket, or nobody waiting for the next chunk (the
    // store is busy with the last one, e.g. replicas pacing a replicated PUT): the
    // consumer is the slow one, not the client.
    if (this.queued > 0 || this.paused || !this.waiter) {
      this.timer!.refresh();
      return;
    }
    this.error ??= s3err("RequestTimeout");
    this.settle();
  };

  private settle(): void {
    const w = this.waiter;
    if (!w) return;
    this.waiter = undefined;
    this.next().then(w.resolve, w.reject);
  }

  next(): Promise<IteratorResult<Buffer>> {
    if (this.finished) return Promise.resolve({ done: true, value: undefined });
    if (!this.timer) this.start();
    if (this.head < this.queue.length) {
      const c = this.queue[this.head]!;
      this.queue[this.head++] = EMPTY;
      if (this.head === this.queue.length) {
        this.queue.length = 0;
        this.head = 0;
      }
      this.queued -= c.length;
      if (this.paused && this.queued <= QUEUE_LOW) {
        this.paused = false;
        this.req.resume();
      }
      try {
        this.check?.chunk(c);
      } catch (err) {
        this.stop();
        return Promise.reject(err);
      }
      return Promise.resolve({ done: false, value: c });
    }
    if (this.error !== undefined) {
      this.stop();
      return Promise.reject(this.error);
    }
    if (this.ended) {
      this.stop();
      try {
        this.check?.end();
      } catch (err) {
        return Promise.reject(err);
      }
      return Promise.resolve({ done: true, value: undefined });
    }
    // The client's idle time counts from when we start waiting for it.
    if (!this.waiter) this.timer?.refresh();
    return new Promise((resolve, reject) => { this.waiter = { resolve, reject }; });
  }

  /** The consumer stopped early: what the client still sends is read and dropped. */
  return(): Promise<IteratorResult<Buffer>> {
    this.stop();
    return Promise.resolve({ done: true, value: undefined });
  }

  private stop(): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.timer);
    this.req.off("data", this.onData);
    this.req.off("end", this.onEnd);
    this.req.off("error", this.onError);
    this.req.off("close", this.onClose);
    this.queue.length = 0;
    this.queued = 0;
    if (!this.ended) this.req.resume();
  }
}

const EMPTY = Buffer.alloc(0);

export interface PreparedBody {
  body: AsyncIterable<Uint8Array>;
  expect: BodyExpectations;
  /** Checksums to echo in the response (x-amz-checksum-*), known once the store has resolved. */
  echo: ChecksumAlgorithm[];
  /** Turns a store's error about this body into the S3 error the client expects. */
  mapError(err: unknown): unknown;
}

/** Reads the checksum headers of a request: x-amz-checksum-ALG values and x-amz-sdk-checksum-algorithm. */
export function headerChecksums(h: IncomingMessage["headers"]): { checksums: Checksums; sdkAlg?: ChecksumAlgorithm } {
  const checksums: Checksums = {};
  for (const a of ALGORITHMS) {
    const v = h[`x-amz-checksum-${a}`];
    if (typeof v === "string") {
      if (!validDigest(a, v)) throw s3err("InvalidRequest", `Value for x-amz-checksum-${a} header is invalid.`);
      checksums[a] = v;
    }
  }
  if (Object.keys(checksums).length > 1) throw s3err("InvalidRequest", "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.");
  if (typeof h["x-amz-checksum-crc64nvme"] === "string") throw s3err("NotImplemented", "CRC64NVME checksums are not supported; use CRC32, CRC32C, SHA1 or SHA256.");
  const sdk = h["x-amz-sdk-checksum-algorithm"] ?? h["x-amz-checksum-algorithm"];
  let sdkAlg: ChecksumAlgorithm | undefined;
  if (typeof sdk === "string" && sdk) {
    sdkAlg = parseAlgorithm(sdk);
    if (!sdkAlg) {
      if (sdk.toUpperCase() === "CRC64NVME") throw s3err("NotImplemented", "CRC64NVME checksums are not supported; use CRC32, CRC32C, SHA1 or SHA256.");
      throw s3err("InvalidRequest", `Checksum algorithm ${sdk} is not supported.`);
    }
  }
  return { checksums, sdkAlg };
}

export function prepareBody(req: IncomingMessage, auth: AuthResult, idleMs: number, count: (n: number) => void): PreparedBody {
  const h = req.headers;
  const { checksums, sdkAlg } = headerChecksums(h);
  const expect: BodyExpectations = { checksums, computeChecksums: sdkAlg ? [sdkAlg] : [] };
  const md5 = h["content-md5"];
  if (typeof md5 === "string") {
    if (!validDigest("md5", md5)) throw s3err("InvalidDigest");
    expect.md5 = md5;
  }
  const mode = auth.payload;
  const streaming = mode === STREAMING_SIGNED || mode === STREAMING_SIGNED_TRAILER || mode === STREAMING_UNSIGNED_TRAILER;
  const te = h["transfer-encoding"];
  if (streaming) {
    const dl = h["x-amz-decoded-content-length"];
    if (typeof dl !== "string" || !/^\d+$/.test(dl)) throw s3err("MissingContentLength", "aws-chunked bodies need x-amz-decoded-content-length.");
    expect.size = Number(dl);
  } else if (typeof h["content-length"] === "string") {
    expect.size = Number(h["content-length"]);
  } else if (!te) {
    expect.size = 0;
  }
  if ((expect.size ?? 0) > MAX_SINGLE_PUT) throw s3err("EntityTooLarge", undefined, { ProposedSize: String(expect.size), MaxSizeAllowed: String(MAX_SINGLE_PUT) });

  const trailerNames = typeof h["x-amz-trailer"] === "string" ? h["x-amz-trailer"].split(",").map((s) => s.trim().toLowerCase()).filter(Boolean) : [];
  let trailerAlg: ChecksumAlgorithm | undefined;
  for (const t of trailerNames) {
    const a = parseAlgorithm(t);
    if (!a) {
      if (t === "x-amz-checksum-crc64nvme") throw s3err("NotImplemented", "CRC64NVME checksums are not supported; use CRC32, CRC32C, SHA1 or SHA256.");
      throw s3err("InvalidRequest", `The trailer ${t} is not supported.`);
    }
    trailerAlg = a;
  }
  if (trailerAlg && !(mode === STREAMING_SIGNED_TRAILER || mode === STREAMING_UNSIGNED_TRAILER)) {
    throw s3err("InvalidRequest", "x-amz-trailer needs x-amz-content-sha256 STREAMING-UNSIGNED-PAYLOAD-TRAILER or STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER.");
  }
  if (trailerAlg) expect.computeChecksums!.push(trailerAlg);
  const echo = [...new Set<ChecksumAlgorithm>([...(Object.keys(checksums) as ChecksumAlgorithm[]), ...expect.computeChecksums!])];

  const contentSha = /^[0-9a-f]{64}$/.test(mode) ? mode : undefined;
  // A signed payload whose SHA-256 the store computes anyway (a SHA-256 checksum was asked for) is
  // checked by the store, as that checksum's expected value, instead of being hashed twice.
  let shaByStore = false;
  if (contentSha && (checksums.sha256 !== undefined || expect.computeChecksums!.includes("sha256"))) {
    const b64 = Buffer.from(contentSha, "hex").toString("base64");
    if (checksums.sha256 === undefined || checksums.sha256 === b64) {
      checksums.sha256 = b64;
      shaByStore = true;
    }
  }
  const sha = contentSha && !shaByStore ? createHash("sha256") : undefined;
  let n = 0;
  let decoder: ChunkedDecoder | undefined;
  const check: BodyCheck = {
    chunk(c) {
      sha?.update(c);
      n += c.length;
      if (expect.size !== undefined && n > expect.size) throw s3err("InvalidRequest", "The body is longer than its declared length.");
    },
    end() {
      if (expect.size !== undefined && n !== expect.size) throw s3err("IncompleteBody", `Declared ${expect.size} bytes, received ${n}.`);
      if (sha && sha.digest("hex") !== contentSha) throw s3err("XAmzContentSHA256Mismatch", undefined, { ClientComputedContentSHA256: contentSha!, S3ComputedContentSHA256: "" });
      if (trailerAlg && decoder) {
        const got = decoder.trailers.get(`x-amz-checksum-${trailerAlg}`);
        if (!got) throw s3err("InvalidRequest", `The trailer x-amz-checksum-${trailerAlg} was declared but not sent.`);
        const prior = checksums[trailerAlg];
        if (!validDigest(trailerAlg, got) || (prior !== undefined && prior !== got)) throw s3err("BadDigest", `The ${trailerAlg.toUpperCase()} you specified did not match the calculated checksum.`);
        // The store computes this algorithm anyway (it is in computeChecksums) and checks every expected
        // checksum once the body has ended, so the trailer's value is handed to it instead of hashing twice.
        checksums[trailerAlg] = got;
      }
    },
  };
  const raw = new SocketBody(req, idleMs, count, streaming ? undefined : check);
  if (streaming) decoder = new ChunkedDecoder(raw, { chain: mode === STREAMING_UNSIGNED_TRAILER ? undefined : auth.chain, trailer: mode !== STREAMING_SIGNED });
  const mapError = (err: unknown): unknown => {
    const d = (err as { details?: { algorithm?: string } }).details;
    const code = err instanceof S3Error ? err.code : blobCodeOf(err);
    if (shaByStore && code === "BadDigest" && (d?.algorithm === "sha256" || /sha-?256/i.test((err as Error).message))) {
      return s3err("XAmzContentSHA256Mismatch", undefined, { ClientComputedContentSHA256: contentSha!, S3ComputedContentSHA256: "" });
    }
    return err;
  };
  return { body: decoder ? checked(decoder, check) : raw, expect, echo, mapError };
}

async function* checked(src: AsyncIterable<Uint8Array>, check: BodyCheck): AsyncGenerator<Uint8Array> {
  for await (const c of src) {
    check.chunk(c);
    yield c;
  }
  check.end();
}

/** Reads a small body (XML) whole, capped; payload hash and aws-chunked still honoured. */
export async function readSmall(p: PreparedBody, max: number): Promise<Buffer> {
  if ((p.expect.size ?? 0) > max) throw s3err("MalformedXML", `The request body is larger than ${max} bytes.`);
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of p.body) {
    n += c.length;
    if (n > max) throw s3err("MalformedXML", `The request body is larger than ${max} bytes.`);
    parts.push(Buffer.from(c));
  }
  const data = Buffer.concat(parts);
  if (p.expect.md5 && createHash("md5").update(data).digest("base64") !== p.expect.md5) throw s3err("BadDigest");
  for (const [a, v] of Object.entries(p.expect.checksums ?? {}) as [ChecksumAlgorithm, string][]) {
    const hh = hasher(a);
    hh.update(data);
    if (hh.digest() !== v) throw p.mapError(s3err("BadDigest", `The ${a.toUpperCase()} you specified did not match the calculated checksum.`));
  }
  return data;
}
