/**
 * A streaming multipart/form-data reader (RFC 7578) for browser form uploads:
 * fields are read one after the other, small ones whole (capped), the file
 * part as a stream of the bytes between its headers and the next delimiter,
 * so an upload of any size passes through in bounded memory. A body that ends
 * before its closing delimiter throws IncompleteBody from the stream, so a
 * store being fed the file part never commits a truncated object.
 */
import { s3err } from "./errors.js";

/** One part's headers; the body is read with FormReader.value() or .stream(). */
export interface FormPart {
  /** Field name as sent (RFC 7578: case kept; S3 compares names case-insensitively). */
  name: string;
  filename?: string;
  contentType?: string;
}

const MAX_PART_HEADERS = 8192;
const CRLF = Buffer.from("\r\n");

/** The boundary of a multipart/form-data Content-Type; undefined when the type is another. */
export function boundaryOf(contentType: string | undefined): string | undefined {
  if (!contentType || !/^\s*multipart\/form-data\s*(;|$)/i.test(contentType)) return undefined;
  const m = /;\s*boundary\s*=\s*(?:"([^"]{1,70})"|([^\s;]{1,70}))/i.exec(contentType);
  return m ? (m[1] ?? m[2]) : undefined;
}

/**
 * A Content-Disposition header's parameters (name, filename). Browsers send
 * a file's name as it is (an old browser: its whole Windows path), with '"'
 * as %22 or \": backslashes are kept, only \" is unescaped.
 */
function dispositionParams(v: string): Map<string, string> {
  const out = new Map<string, string>();
  const re = /;\s*([^\s=;]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))/g;
  for (const m of v.matchAll(re)) out.set(m[1]!.toLowerCase(), m[2] !== undefined ? m[2].replace(/\\"/g, '"') : m[3]!.trim());
  return out;
}

export class FormReader {
  private buf: Buffer;
  private readonly it: AsyncIterator<Uint8Array>;
  private ended = false;
  /** "\r\n--boundary": what ends every part's body (the body is read as if it started with CRLF, so the first one too). */
  private readonly delim: Buffer;
  /** The current part's body is still unread (part() skips what is left of it). */
  private inBody = false;
  private finished = false;
  /** Bytes of field bodies read whole so far (value()), against the caller's cap. */
  fieldBytes = 0;

  constructor(body: AsyncIterable<Uint8Array>, boundary: string) {
    this.it = body[Symbol.asyncIterator]();
    this.delim = Buffer.from(`\r\n--${boundary}`);
    this.buf = CRLF;
    this.inBody = true; // the preamble, before the first delimiter, is a body nobody reads
  }

  private async fill(): Promise<boolean> {
    if (this.ended) return false;
    const n = await this.it.next();
    if (n.done) {
      this.ended = true;
      return false;
    }
    this.buf = this.buf.length ? Buffer.concat([this.buf, n.value]) : Buffer.from(n.value.buffer, n.value.byteOffset, n.value.byteLength);
    return true;
  }

  private truncated(): never {
    throw s3err("IncompleteBody", "The multipart/form-data body ended before its closing boundary.");
  }

  /**
   * The next slice of the current part's body, or undefined once its
   * delimiter is reached (then consumed, with the line end or "--" after it).
   */
  private async bodyChunk(): Promise<Buffer | undefined> {
    if (!this.inBody) return undefined;
    for (;;) {
      const i = this.buf.indexOf(this.delim);
      if (i > 0) {
        const out = this.buf.subarray(0, i);
        this.buf = this.buf.subarray(i);
        return out;
      }
      if (i === 0) {
        await this.afterDelimiter();
        return undefined;
      }
      // Everything but a tail that could be the start of the delimiter is body.
      const keep = Math.min(this.buf.length, this.delim.length - 1);
      if (this.buf.length > keep) {
        const out = this.buf.subarray(0, this.buf.length - keep);
        this.buf = Buffer.from(this.buf.subarray(this.buf.length - keep));
        return out;
      }
      if (!(await this.fill())) this.truncated();
    }
  }

  /** At a delimiter: "--" closes the body, else (transport padding then) CRLF starts the next part's headers. */
  private async afterDelimiter(): Promise<void> {
    while (this.buf.length < this.delim.length + 2) if (!(await this.fill())) this.truncated();
    this.inBody = false;
    const rest = this.buf.subarray(this.delim.length);
    if (rest[0] === 0x2d && rest[1] === 0x2d) {
      this.finished = true;
      this.buf = Buffer.alloc(0);
      return;
    }
    let eol: number;
    while ((eol = this.buf.indexOf(CRLF, this.delim.length)) < 0) {
      if (this.buf.length > this.delim.length + 256) throw s3err("MalformedPOSTRequest", "The body of your POST request is not well-formed multipart/form-data.");
      if (!(await this.fill())) this.truncated();
    }
    if (this.buf.subarray(this.delim.length, eol).toString("latin1").trim() !== "") throw s3err("MalformedPOSTRequest", "The body of your POST request is not well-formed multipart/form-data.");
    this.buf = this.buf.subarray(eol + 2);
  }

  /** The next part's headers (what is left of the current part is skipped); undefined after the closing delimiter. */
  async part(): Promise<FormPart | undefined> {
    while ((await this.bodyChunk()) !== undefined) { /* skipped */ }
    if (this.finished) return undefined;
    let end: number;
    while ((end = this.buf.indexOf("\r\n\r\n")) < 0) {
      if (this.buf.length > MAX_PART_HEADERS) throw s3err("MalformedPOSTRequest", "A form part's headers are too large.");
      if (!(await this.fill())) this.truncated();
    }
    if (end > MAX_PART_HEADERS) throw s3err("MalformedPOSTRequest", "A form part's headers are too large.");
    const lines = this.buf.subarray(0, end).toString("utf8").split("\r\n");
    this.buf = this.buf.subarray(end + 4);
    this.inBody = true;
    let disposition: string | undefined, contentType: string | undefined;
    for (const line of lines) {
      const i = line.indexOf(":");
      if (i < 0) continue;
      const name = line.slice(0, i).trim().toLowerCase(), value = line.slice(i + 1).trim();
      if (name === "content-disposition") disposition = value;
      else if (name === "content-type") contentType = value;
    }
    const params = disposition && /^form-data\s*(;|$)/i.test(disposition) ? dispositionParams(disposition) : undefined;
    const name = params?.get("name");
    if (name === undefined) throw s3err("MalformedPOSTRequest", "Every form part needs a Content-Disposition: form-data header with a name.");
    return { name, filename: params!.get("filename"), contentType };
  }

  /** The current part's body whole, as UTF-8; the bytes count against `fieldBytes`, refused beyond maxTotal. */
  async value(maxTotal: number): Promise<string> {
    const parts: Buffer[] = [];
    for (let c = await this.bodyChunk(); c !== undefined; c = await this.bodyChunk()) {
      this.fieldBytes += c.length;
      if (this.fieldBytes > maxTotal) throw s3err("MaxPostPreDataLengthExceeded", "Your POST request fields preceding the upload file were too large.");
      parts.push(Buffer.from(c));
    }
    return Buffer.concat(parts).toString("utf8");
  }

  /** The current part's body as a stream; `check` sees each chunk's size and the total at the end (and may throw). */
  async *stream(check: { chunk(n: number): void; end(): void }): AsyncGenerator<Uint8Array> {
    for (let c = await this.bodyChunk(); c !== undefined; c = await this.bodyChunk()) {
      check.chunk(c.length);
      yield c;
    }
    check.end();
  }

  /** Lets go of the body (its idle timer and socket listeners) when the form is abandoned part-way (an error). */
  async close(): Promise<void> {
    this.ended = true;
    await this.it.return?.();
  }

  /** Reads (and drops) everything after the current part, up to `max` bytes; false when more was left (the caller closes the connection). */
  async drain(max: number): Promise<boolean> {
    let n = 0;
    for (;;) {
      n += this.buf.length;
      this.buf = Buffer.alloc(0);
      if (n > max) return false;
      if (!(await this.fill())) return true;
    }
  }
}
