/**
 * A request body as the blob store gets it: read from the socket with an idle
 * timeout and byte counting (socket-body.ts), aws-chunked frames decoded and
 * their signatures checked, the payload SHA-256 verified at the end (throwing
 * before the stream ends, so nothing bad is committed), and the expectations
 * (size, Content-MD5, header and trailer checksums) the store verifies.
 * Nothing is hashed twice: a trailer's value, and the signed SHA-256 when a
 * SHA-256 checksum is asked for anyway, become expected checksums the store
 * checks against the digests it computes.
 */
import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { ALGORITHMS, blobCodeOf, hasher, parseAlgorithm, validDigest, type BodyExpectations, type ChecksumAlgorithm, type Checksums } from "../blob/index.js";
import { ChunkedDecoder } from "./chunked.js";
import { S3Error, s3err } from "./errors.js";
import { STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER, type AuthResult } from "./sigv4.js";
import { SocketBody, type BodyCheck } from "./socket-body.js";

const MAX_SINGLE_PUT = 5 * 1024 ** 3;

const NO_CRC64 = "CRC64NVME checksums are not supported; use CRC32, CRC32C, SHA1 or SHA256.";

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
  if (typeof h["x-amz-checksum-crc64nvme"] === "string") throw s3err("NotImplemented", NO_CRC64);
  const sdk = h["x-amz-sdk-checksum-algorithm"] ?? h["x-amz-checksum-algorithm"];
  let sdkAlg: ChecksumAlgorithm | undefined;
  if (typeof sdk === "string" && sdk) {
    sdkAlg = parseAlgorithm(sdk);
    if (!sdkAlg) {
      if (sdk.toUpperCase() === "CRC64NVME") throw s3err("NotImplemented", NO_CRC64);
      throw s3err("InvalidRequest", `Checksum algorithm ${sdk} is not supported.`);
    }
  }
  return { checksums, sdkAlg };
}

export function prepareBody(req: IncomingMessage, auth: AuthResult, idleMs: number, count: (n: number) => void, minRate = 0): PreparedBody {
  const h = req.headers;
  const mode = auth.payload;
  const expect = headerExpectations(h);
  const chunked = isAwsChunked(mode);
  const size = declaredSize(h, chunked);
  if (size !== undefined) expect.size = size;
  if ((expect.size ?? 0) > MAX_SINGLE_PUT) throw s3err("EntityTooLarge", undefined, { ProposedSize: String(expect.size), MaxSizeAllowed: String(MAX_SINGLE_PUT) });
  const trailerAlg = trailerChecksum(h, mode);
  if (trailerAlg) expect.computeChecksums!.push(trailerAlg);
  const echo = [...new Set<ChecksumAlgorithm>([...(Object.keys(expect.checksums!) as ChecksumAlgorithm[]), ...expect.computeChecksums!])];
  const payload = payloadHashCheck(mode, expect);
  const mapError = shaMismatchFromStore(payload);
  if (!chunked) return { body: new SocketBody(req, idleMs, count, bodyCheck(expect, payload), minRate), expect, echo, mapError };
  const decoder = new ChunkedDecoder(new SocketBody(req, idleMs, count, undefined, minRate), { chain: mode === STREAMING_UNSIGNED_TRAILER ? undefined : auth.chain, trailer: mode !== STREAMING_SIGNED });
  return { body: checked(decoder, bodyCheck(expect, payload, trailerAlg && { alg: trailerAlg, decoder })), expect, echo, mapError };
}

/** The checksum headers and Content-MD5 the store is to verify, and the checksums it is to compute. */
function headerExpectations(h: IncomingMessage["headers"]): BodyExpectations {
  const { checksums, sdkAlg } = headerChecksums(h);
  const expect: BodyExpectations = { checksums, computeChecksums: sdkAlg ? [sdkAlg] : [] };
  const md5 = h["content-md5"];
  if (typeof md5 === "string") {
    if (!validDigest("md5", md5)) throw s3err("InvalidDigest");
    expect.md5 = md5;
  }
  return expect;
}

/** Framing: an x-amz-content-sha256 STREAMING-* mode means aws-chunked frames (signed or not, with trailers or not). */
function isAwsChunked(mode: string): boolean {
  return mode === STREAMING_SIGNED || mode === STREAMING_SIGNED_TRAILER || mode === STREAMING_UNSIGNED_TRAILER;
}

/**
 * The payload length the client declared: x-amz-decoded-content-length under
 * aws-chunked (required), else Content-Length; unknown under a plain chunked
 * transfer; 0 for a request with neither.
 */
function declaredSize(h: IncomingMessage["headers"], awsChunked: boolean): number | undefined {
  if (awsChunked) {
    const dl = h["x-amz-decoded-content-length"];
    if (typeof dl !== "string" || !/^\d+$/.test(dl)) throw s3err("MissingContentLength", "aws-chunked bodies need x-amz-decoded-content-length.");
    return Number(dl);
  }
  if (typeof h["content-length"] === "string") return Number(h["content-length"]);
  return h["transfer-encoding"] ? undefined : 0;
}

/** The checksum algorithm an x-amz-trailer announces (the last one named), refused unless the framing carries trailers. */
function trailerChecksum(h: IncomingMessage["headers"], mode: string): ChecksumAlgorithm | undefined {
  const names = typeof h["x-amz-trailer"] === "string" ? h["x-amz-trailer"].split(",").map((s) => s.trim().toLowerCase()).filter(Boolean) : [];
  let alg: ChecksumAlgorithm | undefined;
  for (const t of names) {
    const a = parseAlgorithm(t);
    if (!a) {
      if (t === "x-amz-checksum-crc64nvme") throw s3err("NotImplemented", NO_CRC64);
      throw s3err("InvalidRequest", `The trailer ${t} is not supported.`);
    }
    alg = a;
  }
  if (alg && !(mode === STREAMING_SIGNED_TRAILER || mode === STREAMING_UNSIGNED_TRAILER)) {
    throw s3err("InvalidRequest", "x-amz-trailer needs x-amz-content-sha256 STREAMING-UNSIGNED-PAYLOAD-TRAILER or STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER.");
  }
  return alg;
}

/** Who verifies a signed payload's SHA-256: nobody (unsigned or aws-chunked), the store, or the body check as it streams. */
interface PayloadHash { contentSha?: string; byStore: boolean }

/**
 * A signed payload whose SHA-256 the store computes anyway (a SHA-256
 * checksum was asked for) is checked by the store, as that checksum's
 * expected value (written into expect.checksums), instead of being hashed twice.
 */
function payloadHashCheck(mode: string, expect: BodyExpectations): PayloadHash {
  const contentSha = /^[0-9a-f]{64}$/.test(mode) ? mode : undefined;
  const checksums = expect.checksums!;
  if (!contentSha || (checksums.sha256 === undefined && !expect.computeChecksums!.includes("sha256"))) return { contentSha, byStore: false };
  const b64 = Buffer.from(contentSha, "hex").toString("base64");
  if (checksums.sha256 !== undefined && checksums.sha256 !== b64) return { contentSha, byStore: false };
  checksums.sha256 = b64;
  return { contentSha, byStore: true };
}

const shaMismatch = (contentSha: string) => s3err("XAmzContentSHA256Mismatch", undefined, { ClientComputedContentSHA256: contentSha, S3ComputedContentSHA256: "" });

/** When the store checked the signed SHA-256, its BadDigest for SHA-256 is the client's XAmzContentSHA256Mismatch. */
function shaMismatchFromStore(p: PayloadHash): (err: unknown) => unknown {
  return (err) => {
    const d = (err as { details?: { algorithm?: string } }).details;
    const code = err instanceof S3Error ? err.code : blobCodeOf(err);
    if (p.byStore && code === "BadDigest" && (d?.algorithm === "sha256" || /sha-?256/i.test((err as Error).message))) return shaMismatch(p.contentSha!);
    return err;
  };
}

/** The declared length, the signed SHA-256 (unless the store checks it) and a trailer checksum, checked as the body passes. */
function bodyCheck(expect: BodyExpectations, payload: PayloadHash, trailer?: { alg: ChecksumAlgorithm; decoder: ChunkedDecoder }): BodyCheck {
  const sha = payload.contentSha && !payload.byStore ? createHash("sha256") : undefined;
  let n = 0;
  return {
    chunk(c) {
      sha?.update(c);
      n += c.length;
      if (expect.size !== undefined && n > expect.size) throw s3err("InvalidRequest", "The body is longer than its declared length.");
    },
    end() {
      if (expect.size !== undefined && n !== expect.size) throw s3err("IncompleteBody", `Declared ${expect.size} bytes, received ${n}.`);
      if (sha && sha.digest("hex") !== payload.contentSha) throw shaMismatch(payload.contentSha!);
      if (trailer) acceptTrailerChecksum(trailer.alg, trailer.decoder.trailers, expect.checksums!);
    },
  };
}

/**
 * The trailer's checksum, once the body has ended: it must have been sent,
 * be well-formed and agree with a header value of the same algorithm. The
 * store computes this algorithm anyway (it is in computeChecksums) and checks
 * every expected checksum once the body has ended, so the value is handed to
 * it instead of hashing twice.
 */
function acceptTrailerChecksum(alg: ChecksumAlgorithm, trailers: Map<string, string>, checksums: Checksums): void {
  const got = trailers.get(`x-amz-checksum-${alg}`);
  if (!got) throw s3err("InvalidRequest", `The trailer x-amz-checksum-${alg} was declared but not sent.`);
  const prior = checksums[alg];
  if (!validDigest(alg, got) || (prior !== undefined && prior !== got)) throw s3err("BadDigest", `The ${alg.toUpperCase()} you specified did not match the calculated checksum.`);
  checksums[alg] = got;
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
