/**
 * A request body as the blob store gets it: read from the socket with an idle
 * timeout and byte counting, aws-chunked frames decoded and their signatures
 * checked, the payload SHA-256 and trailing checksums verified at the end
 * (throwing before the stream ends, so nothing bad is committed), and the
 * expectations (size, Content-MD5, header checksums) the store verifies.
 */
import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { BodyExpectations, ChecksumAlgorithm, Checksums } from "../blob/types.js";
import { ALGORITHMS, hasher, parseAlgorithm, validDigest, type Hasher } from "./checksum.js";
import { ChunkedDecoder } from "./chunked.js";
import { s3err } from "./errors.js";
import { STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER, type AuthResult } from "./sigv4.js";

const MAX_SINGLE_PUT = 5 * 1024 ** 3;

/** Raw bytes off the socket; RequestTimeout when the client goes quiet for idleMs. */
export async function* rawBody(req: IncomingMessage, idleMs: number, count: (n: number) => void): AsyncGenerator<Buffer> {
  const it = req[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let timer: NodeJS.Timeout | undefined;
  try {
    for (;;) {
      const r = await Promise.race([
        it.next(),
        new Promise<never>((_, reject) => { timer = setTimeout(() => reject(s3err("RequestTimeout")), idleMs); }),
      ]);
      clearTimeout(timer);
      if (r.done) return;
      count(r.value.length);
      yield r.value;
    }
  } catch (err) {
    if ((err as { code?: string }).code === "ECONNRESET" || (err as Error).message === "aborted") throw s3err("IncompleteBody");
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

export interface PreparedBody {
  body: AsyncIterable<Uint8Array>;
  expect: BodyExpectations;
  /** Checksums to echo in the response (x-amz-checksum-*), known once the store has resolved. */
  echo: ChecksumAlgorithm[];
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

  const raw = rawBody(req, idleMs, count);
  const decoder = streaming ? new ChunkedDecoder(raw, { chain: mode === STREAMING_UNSIGNED_TRAILER ? undefined : auth.chain, trailer: mode !== STREAMING_SIGNED }) : undefined;
  const contentSha = /^[0-9a-f]{64}$/.test(mode) ? mode : undefined;
  const src: AsyncIterable<Uint8Array> = decoder ?? raw;

  async function* verified(): AsyncGenerator<Uint8Array> {
    const sha = contentSha ? createHash("sha256") : undefined;
    const th: Hasher | undefined = trailerAlg ? hasher(trailerAlg) : undefined;
    let n = 0;
    for await (const c of src) {
      sha?.update(c);
      th?.update(c);
      n += c.length;
      if (expect.size !== undefined && n > expect.size) throw s3err("InvalidRequest", "The body is longer than its declared length.");
      yield c;
    }
    if (expect.size !== undefined && n !== expect.size) throw s3err("IncompleteBody", `Declared ${expect.size} bytes, received ${n}.`);
    if (sha && sha.digest("hex") !== contentSha) throw s3err("XAmzContentSHA256Mismatch", undefined, { ClientComputedContentSHA256: contentSha!, S3ComputedContentSHA256: "" });
    if (th && decoder) {
      const got = decoder.trailers.get(`x-amz-checksum-${trailerAlg}`);
      if (!got) throw s3err("InvalidRequest", `The trailer x-amz-checksum-${trailerAlg} was declared but not sent.`);
      if (got !== th.digest()) throw s3err("BadDigest", `The ${trailerAlg!.toUpperCase()} you specified did not match the calculated checksum.`);
    }
  }
  return { body: verified(), expect, echo };
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
    if (hh.digest() !== v) throw s3err("BadDigest");
  }
  return data;
}
