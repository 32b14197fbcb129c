import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { S3Error } from "./errors.js";
import { SocketBody } from "./socket-body.js";

/**
 * The idle timeout blames the client only while we wait for it: a consumer
 * that holds a chunk for longer than idleMs (a replicated PUT paced by its
 * slowest replica) must not turn into RequestTimeout; a client that sends
 * nothing while we wait still does.
 */
test("SocketBody: a slow consumer is not a silent client; a silent client is", async () => {
  const results: string[] = [];
  const server = http.createServer(async (req, res) => {
    const body = new SocketBody(req, 200, () => {});
    const got: Buffer[] = [];
    try {
      const first = await body.next();
      got.push(first.value as Buffer);
      await new Promise((r) => setTimeout(r, 600)); // busy with the first chunk for 3 × idleMs
      for (let r = await body.next(); !r.done; r = await body.next()) got.push(r.value);
      results.push(`ok ${Buffer.concat(got).toString()}`);
    } catch (err) {
      results.push(`error ${err instanceof S3Error ? err.code : (err as Error).message}`);
    }
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  const send = (chunks: [number, string][], total: number) => new Promise<void>((resolve) => {
    const s = net.connect(port, "127.0.0.1", () => {
      s.write(`PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: ${total}\r\n\r\n`);
      for (const [at, data] of chunks) setTimeout(() => s.write(data), at);
    });
    s.on("data", () => { s.destroy(); resolve(); });
    s.on("close", () => resolve());
  });
  try {
    // The rest arrives while the consumer is waiting again (after 600 ms), well within 200 ms of its next().
    await send([[0, "hello "], [650, "world"]], 11);
    // Here the consumer waits from 600 ms on and the client never sends the rest: RequestTimeout.
    await send([[0, "hello "]], 11);
  } finally {
    server.closeAllConnections();
    server.close();
  }
  assert.equal(results[0], "ok hello world");
  assert.equal(results[1], "error RequestTimeout");
});
