/**
 * What a hostile client can hold on the S3 port: a body dripping a byte every
 * few seconds is cut with RequestTimeout (s3.minBodyRate), connections beyond
 * s3.maxConnections are closed on accept. Real server, real sockets.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { S3Error } from "./errors.js";
import { codeOf, raw, signer, startS3 } from "./test-fixture.js";
import { parseXml } from "./xml.js";

async function signedPutHeaders(port: number, path: string, length: number): Promise<Record<string, string>> {
  const headers: Record<string, string> = { host: `127.0.0.1:${port}`, "content-length": String(length), "x-amz-content-sha256": "UNSIGNED-PAYLOAD" };
  const signed = await signer().sign({ method: "PUT", protocol: "http:", hostname: "127.0.0.1", port, path, query: {}, headers });
  return { ...headers, ...signed.headers } as Record<string, string>;
}

/** A signed PUT whose body is written `chunk` bytes every `everyMs`; resolves with the answer and how long it took. */
async function slowPut(port: number, path: string, length: number, chunk: number, everyMs: number): Promise<{ status: number; code?: string; ms: number }> {
  const headers = await signedPutHeaders(port, path, length);
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    let sent = 0;
    let timer: NodeJS.Timeout | undefined;
    const req = http.request({ host: "127.0.0.1", port, method: "PUT", path, headers, agent: false }, (res) => {
      clearInterval(timer);
      let body = "";
      res.on("data", (c: Buffer) => (body += c));
      res.on("end", () => { resolve({ status: res.statusCode!, code: codeOf(body), ms: Date.now() - t0 }); req.destroy(); });
    });
    req.on("error", (e) => { clearInterval(timer); reject(e); });
    req.flushHeaders();
    timer = setInterval(() => {
      const n = Math.min(chunk, length - sent);
      if (n <= 0) return;
      sent += n;
      req.write(Buffer.alloc(n, 7));
      if (sent === length) { clearInterval(timer); req.end(); }
    }, everyMs);
  });
}

test("a PUT dripping a byte at a time is cut with RequestTimeout; a slow but steady one is not", { timeout: 30_000 }, async () => {
  const f = await startS3({ THOC_S3_IDLE_TIMEOUT: "1s", THOC_S3_MIN_BODY_RATE: "1024" });
  try {
    assert.equal((await raw(f, { method: "PUT", path: "/drip" })).status, 200);
    // Never idle for 1 s (a byte every 300 ms), so only the rate can catch it.
    const drip = await slowPut(f.port, "/drip/k", 100, 1, 300);
    assert.equal(drip.status, 400);
    assert.equal(drip.code, "RequestTimeout");
    assert.ok(drip.ms < 3000, `cut after ${drip.ms} ms`);
    // 20 KB/s, well above 1 KiB/s, for about 2 s: stored.
    const steady = await slowPut(f.port, "/drip/k2", 40 << 10, 4 << 10, 200);
    assert.equal(steady.status, 200);
  } finally {
    await f.close();
  }
});

test("connections beyond s3.maxConnections are closed on accept; the port serves again once they go", { timeout: 30_000 }, async () => {
  const f = await startS3({ THOC_S3_MAX_CONNECTIONS: "4" });
  const open = (): { sock: net.Socket; closed: Promise<number> } => {
    const t0 = Date.now();
    const sock = net.connect(f.port, "127.0.0.1");
    sock.on("error", () => {});
    return { sock, closed: new Promise((r) => sock.on("close", () => r(Date.now() - t0))) };
  };
  try {
    const held = [0, 1, 2, 3].map(open);
    await Promise.all(held.map((h) => new Promise((r) => h.sock.once("connect", r))));
    await new Promise((r) => setTimeout(r, 50));
    const fifth = open();
    const ms = await Promise.race([fifth.closed, new Promise<number>((r) => setTimeout(() => r(-1), 2000))]);
    fifth.sock.destroy();
    assert.ok(ms >= 0 && ms < 500, `fifth connection closed after ${ms} ms`);
    assert.match(await f.registry.metrics(), /thoc_s3_connections_refused_total 1/);
    for (const h of held) h.sock.destroy();
    await Promise.all(held.map((h) => h.closed));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal((await raw(f, { method: "PUT", path: "/after-flood" })).status, 200);
  } finally {
    await f.close();
  }
});

test("MalformedXML never echoes the parser's state, and deep nesting is refused before the validator runs", () => {
  const msg = (text: string) => { try { parseXml(text, "Delete"); return "parsed"; } catch (err) { assert.ok(err instanceof S3Error); assert.equal(err.code, "MalformedXML"); return err.message; } };
  const shallow = msg("<Delete><Object><Key>k</Key><Unclosed>");
  assert.doesNotMatch(shallow, /Unclosed|Object/, shallow);
  const t0 = process.hrtime.bigint();
  const deep = msg("<a>".repeat(30_000));
  assert.ok(Number(process.hrtime.bigint() - t0) / 1e6 < 100, "the flood is refused in a linear scan");
  assert.match(deep, /deeper than 16/);
  assert.equal(msg("<Delete><Object><Key>k</Key></Object></Delete>"), "parsed");
});
