/**
 * Decoder for aws-chunked request bodies (Content-Encoding: aws-chunked):
 *
 *   signed:   <hex>;chunk-signature=<sig>\r\n<data>\r\n ... 0;chunk-signature=<sig>\r\n[trailers]\r\n
 *   unsigned: <hex>\r\n<data>\r\n ... 0\r\n<name>:<value>\r\n ... \r\n
 *
 * Data is passed on as it arrives (never a whole chunk held back), and a bad
 * chunk signature, a malformed frame or a truncated body throws before the
 * stream ends, so the blob store never commits what it got.
 */
import { createHash, type Hash } from "node:crypto";
import { s3err } from "./errors.js";
import { chunkSignature, equalHex, trailerSignature, type AuthResult } from "./sigv4.js";

const MAX_LINE = 4096;
const MAX_TRAILER_BYTES = 16384;

export interface ChunkedOptions {
  /** Verify chunk signatures along this chain (STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]). */
  chain?: AuthResult["chain"];
  /** Whether trailing headers follow the last chunk. */
  trailer: boolean;
}

export class ChunkedDecoder {
  /** Trailing headers (lower-case names), filled once the body has been read to its end. */
  readonly trailers = new Map<string, string>();
  constructor(private readonly src: AsyncIterable<Uint8Array>, private readonly opts: ChunkedOptions) {}

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    const it = this.src[Symbol.asyncIterator]();
    try {
      yield* this.frames(it);
    } finally {
      // Also on a bad frame or signature: the source (the socket reader) stops and drops the rest.
      await it.return?.();
    }
  }

  private async *frames(it: AsyncIterator<Uint8Array>): AsyncGenerator<Uint8Array> {
    let buf: Buffer = Buffer.alloc(0);
    let ended = false;
    const more = async (): Promise<boolean> => {
      if (ended) return false;
      const r = await it.next();
      if (r.done) { ended = true; return false; }
      const v = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
      buf = buf.length ? Buffer.concat([buf, v]) : v;
      return true;
    };
    const line = async (): Promise<string | undefined> => {
      for (;;) {
        const i = buf.indexOf("\r\n");
        if (i >= 0) {
          const s = buf.subarray(0, i).toString("latin1");
          buf = buf.subarray(i + 2);
          return s;
        }
        if (buf.length > MAX_LINE) throw s3err("InvalidRequest", "aws-chunked: a chunk header line is too long.");
        if (!(await more())) return undefined;
      }
    };
    const incomplete = () => s3err("IncompleteBody", "The aws-chunked body ended before its final chunk.");
    const chain = this.opts.chain;
    let prev = chain?.seed ?? "";

    for (;;) {
      const header = await line();
      if (header === undefined) throw incomplete();
      const [sizeHex, ...exts] = header.split(";");
      if (!/^[0-9a-fA-F]{1,16}$/.test(sizeHex!.trim())) throw s3err("InvalidRequest", `aws-chunked: bad chunk size line "${header.slice(0, 80)}".`);
      const size = parseInt(sizeHex!.trim(), 16);
      let sig: string | undefined;
      for (const e of exts) {
        const [k, v] = e.split("=");
        if (k?.trim() === "chunk-signature") sig = v?.trim();
      }
      if (chain && !sig) throw s3err("SignatureDoesNotMatch", "aws-chunked: a chunk has no chunk-signature.");
      const h: Hash | undefined = chain ? createHash("sha256") : undefined;
      let left = size;
      while (left > 0) {
        if (buf.length === 0 && !(await more())) throw incomplete();
        const take = Math.min(left, buf.length);
        const piece = buf.subarray(0, take);
        buf = buf.subarray(take);
        left -= take;
        h?.update(piece);
        yield piece;
      }
      if (chain) {
        const want = chunkSignature(chain, prev, h!.digest("hex"));
        if (!equalHex(want, sig!.toLowerCase())) throw s3err("SignatureDoesNotMatch", "aws-chunked: a chunk signature does not match.");
        prev = want;
      }
      if (size > 0) {
        while (buf.length < 2) if (!(await more())) throw incomplete();
        if (buf[0] !== 13 || buf[1] !== 10) throw s3err("InvalidRequest", "aws-chunked: chunk data is not followed by CRLF.");
        buf = buf.subarray(2);
        continue;
      }
      break;
    }
    // Trailers (or the closing empty line).
    let trailerBytes = 0;
    let trailerSig: string | undefined;
    const canonical: string[] = [];
    for (;;) {
      const l = await line();
      if (l === undefined) {
        if (buf.length === 0) break; // tolerate a missing final CRLF; a declared but absent trailer is caught by the caller
        throw incomplete();
      }
      if (l === "") break;
      trailerBytes += l.length;
      if (trailerBytes > MAX_TRAILER_BYTES) throw s3err("InvalidRequest", "aws-chunked: trailers are too large.");
      const i = l.indexOf(":");
      if (i <= 0) throw s3err("InvalidRequest", `aws-chunked: malformed trailer "${l.slice(0, 80)}".`);
      const name = l.slice(0, i).trim().toLowerCase(), value = l.slice(i + 1).trim();
      if (name === "x-amz-trailer-signature") trailerSig = value;
      else {
        this.trailers.set(name, value);
        canonical.push(`${name}:${value}\n`);
      }
    }
    if (chain && this.opts.trailer) {
      if (!trailerSig) throw s3err("SignatureDoesNotMatch", "aws-chunked: the trailer signature is missing.");
      const want = trailerSignature(chain, prev, canonical.join(""));
      if (!equalHex(want, trailerSig.toLowerCase())) throw s3err("SignatureDoesNotMatch", "aws-chunked: the trailer signature does not match.");
    }
    // Drain whatever the client sent after the frame so the connection stays usable.
    while (await more()) buf = Buffer.alloc(0);
  }
}
