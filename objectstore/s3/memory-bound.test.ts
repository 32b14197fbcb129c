/**
 * Memory stays bounded: a 768 MiB upload (plain and aws-chunked) and download
 * stream through the protocol layer without being buffered. The store here
 * reads bodies and throws the bytes away, so only the S3 layer's own
 * buffering can show in the process's memory.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import http from "node:http";
import { MemoryBlobStore, type GetObjectResult, type ObjectMeta, type PutObjectInput } from "../blob/index.js";
import { signer, startS3, type Fixture } from "./testutil.js";

const MiB = 1024 * 1024;
const TOTAL = 768 * MiB;
const block = Buffer.alloc(MiB, 0x5a);

class DiscardingStore extends MemoryBlobStore {
  override async putObject(input: PutObjectInput): Promise<ObjectMeta> {
    let size = 0;
    const md5 = createHash("md5");
    for await (const c of input.body) { size += c.length; md5.update(c); }
    return { bucket: input.bucket, key: input.key, size, etag: md5.digest("hex"), lastModified: Date.now(), userMeta: {}, checksums: {}, version: "1" };
  }
  override async headObject(bucket: string, key: string): Promise<ObjectMeta> {
    return { bucket, key, size: TOTAL, etag: "x", lastModified: Date.now(), userMeta: {}, checksums: {}, version: "1" };
  }
  override async getObject(bucket: string, key: string): Promise<GetObjectResult> {
    const meta = await this.headObject(bucket, key);
    return { meta, body: (async function* () { for (let i = 0; i < TOTAL / MiB; i++) yield block; })() };
  }
}

let f: Fixture;
let peak = 0;
let sampler: NodeJS.Timeout;
before(async () => {
  const store = new DiscardingStore();
  await store.createBucket("mem", "root");
  f = await startS3({}, store);
  sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 20);
});
after(async () => { clearInterval(sampler); await f.close(); });

async function streamPut(headers: Record<string, string>, frame: (b: Buffer, last: boolean) => Buffer[]): Promise<number> {
  const signed = await signer().sign({ method: "PUT", protocol: "http:", hostname: "127.0.0.1", port: f.port, path: "/mem/big", query: {}, headers: { host: `127.0.0.1:${f.port}`, ...headers } });
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port: f.port, method: "PUT", path: "/mem/big", headers: signed.headers, agent: false }, (res) => { res.resume(); res.on("end", () => resolve(res.statusCode!)); });
    req.on("error", reject);
    let i = 0;
    const pump = () => {
      while (i < TOTAL / MiB) {
        i++;
        let ok = true;
        for (const b of frame(block, i === TOTAL / MiB)) ok = req.write(b) && ok;
        if (!ok) { req.once("drain", pump); return; }
      }
      req.end();
    };
    pump();
  });
}

test("768 MiB PUT (UNSIGNED-PAYLOAD and aws-chunked) and GET with RSS growth well under the object size", async (t) => {
  global.gc?.();
  const base = process.memoryUsage().rss;
  peak = base;
  assert.equal(await streamPut({ "content-length": String(TOTAL), "x-amz-content-sha256": "UNSIGNED-PAYLOAD" }, (b) => [b]), 200);
  const chunkedLen = (TOTAL / MiB) * (`${MiB.toString(16)}\r\n`.length + MiB + 2) + "0\r\n\r\n".length;
  assert.equal(await streamPut({
    "content-length": String(chunkedLen), "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "content-encoding": "aws-chunked",
    "x-amz-decoded-content-length": String(TOTAL),
  }, (b, last) => [Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from(last ? "\r\n0\r\n\r\n" : "\r\n")]), 200);
  const signed = await signer().sign({ method: "GET", protocol: "http:", hostname: "127.0.0.1", port: f.port, path: "/mem/big", query: {}, headers: { host: `127.0.0.1:${f.port}`, "x-amz-content-sha256": "UNSIGNED-PAYLOAD" } });
  const got = await new Promise<number>((resolve, reject) => {
    http.get({ host: "127.0.0.1", port: f.port, path: "/mem/big", headers: signed.headers, agent: false }, (res) => {
      let n = 0;
      res.on("data", (c: Buffer) => { n += c.length; });
      res.on("end", () => resolve(n));
    }).on("error", reject);
  });
  assert.equal(got, TOTAL);
  const growth = (peak - base) / MiB;
  t.diagnostic(`peak RSS growth ${growth.toFixed(1)} MiB`);
  assert.ok(growth < 160, `RSS grew by ${growth.toFixed(0)} MiB while moving ${3 * TOTAL / MiB} MiB`);
});
