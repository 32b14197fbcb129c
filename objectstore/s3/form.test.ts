/**
 * The streaming multipart/form-data reader: the same form split at every
 * possible place (a delimiter across chunks, byte by byte) reads the same;
 * bodies that look like delimiters, empty values, a preamble, quoted names;
 * truncated and malformed bodies refused with S3's codes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { S3Error } from "./errors.js";
import { boundaryOf, FormReader } from "./form.js";

const B = "XyZ-boundary";
function form(fields: [string, string][], file: Buffer, preamble = ""): Buffer {
  return Buffer.concat([
    Buffer.from(preamble + fields.map(([k, v]) => `--${B}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`).join("")),
    Buffer.from(`--${B}\r\nContent-Disposition: form-data; name="file"; filename="a \\"q\\".txt"\r\nContent-Type: text/plain\r\n\r\n`),
    file, Buffer.from(`\r\n--${B}\r\nContent-Disposition: form-data; name="after"\r\n\r\nlate\r\n--${B}--\r\n`),
  ]);
}
async function* split(b: Buffer, at: number[]) {
  let prev = 0;
  for (const i of [...at, b.length]) {
    if (i > prev) yield b.subarray(prev, i);
    prev = Math.max(prev, i);
  }
}
async function read(src: AsyncIterable<Uint8Array>) {
  const r = new FormReader(src, B);
  const fields: [string, string][] = [];
  let file: Buffer | undefined, filename: string | undefined;
  for (let p = await r.part(); p; p = await r.part()) {
    if (p.name === "file") {
      filename = p.filename;
      const parts: Buffer[] = [];
      for await (const c of r.stream({ chunk() {}, end() {} })) parts.push(Buffer.from(c));
      file = Buffer.concat(parts);
    } else fields.push([p.name, await r.value(1 << 20)]);
  }
  return { fields, file, filename };
}

test("the boundary of a multipart/form-data Content-Type, quoted or not; other types have none", () => {
  assert.equal(boundaryOf("multipart/form-data; boundary=abc"), "abc");
  assert.equal(boundaryOf('Multipart/Form-Data; charset=utf-8; boundary="a b"'), "a b");
  assert.equal(boundaryOf("application/x-www-form-urlencoded"), undefined);
  assert.equal(boundaryOf("multipart/form-data"), undefined);
});

test("a form reads the same however it is split, a delimiter-like body and empty values included", async () => {
  const file = Buffer.concat([Buffer.from(`\r\n--${B.slice(0, 5)}`), randomBytes(300), Buffer.from(`\r\n--${B}x`.slice(0, 8)), Buffer.from("\r\n-")]);
  const body = form([["key", "k/${filename}"], ["empty", ""], ["x-amz-meta-a", "line1\r\nline2"]], file, "preamble\r\n");
  const want = await read(split(body, []));
  assert.deepEqual(want.fields, [["key", "k/${filename}"], ["empty", ""], ["x-amz-meta-a", "line1\r\nline2"], ["after", "late"]]);
  assert.ok(want.file!.equals(file));
  assert.equal(want.filename, 'a "q".txt');
  for (let i = 1; i < body.length; i += 7) {
    const got = await read(split(body, [i, i + 3, i + 40]));
    assert.deepEqual(got.fields, want.fields, `split at ${i}`);
    assert.ok(got.file!.equals(file), `split at ${i}`);
  }
  const bytes = await read(split(body, Array.from({ length: body.length }, (_, i) => i)));
  assert.ok(bytes.file!.equals(file), "byte by byte");
});

test("truncated, header-less and oversized forms are refused with S3's codes", async () => {
  const code = (p: Promise<unknown>) => p.then(() => "none", (e: unknown) => (e instanceof S3Error ? e.code : String(e)));
  const body = form([["key", "k"]], Buffer.alloc(1000, 1));
  assert.equal(await code(read(split(body.subarray(0, 700), []))), "IncompleteBody");
  assert.equal(await code(read(split(Buffer.from(`--${B}\r\nX-Other: 1\r\n\r\nv\r\n--${B}--\r\n`), []))), "MalformedPOSTRequest");
  assert.equal(await code(read(split(Buffer.from(`--${B}\r\nContent-Disposition: form-data; name="a"\r\n${"X: y\r\n".repeat(2000)}\r\nv\r\n--${B}--`), []))), "MalformedPOSTRequest");
  const r = new FormReader(split(Buffer.from(`--${B}\r\nContent-Disposition: form-data; name="big"\r\n\r\n${"v".repeat(5000)}\r\n--${B}--\r\n`), [100]), B);
  await r.part();
  assert.equal(await code(r.value(4096)), "MaxPostPreDataLengthExceeded");
});
