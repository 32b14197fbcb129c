/**
 * CORS with a real browser against a real `thoc-node agent --dev`: Debian's
 * headless Chromium (driven by playwright-core over its debugging pipe; no
 * browser download) loads a page from another origin (a plain Node HTTP
 * server on 127.0.0.1) and, from that page, fetch()es a presigned PUT (the
 * browser sends the preflight itself) and a presigned GET whose ETag it may
 * read only because the bucket's rule exposes it. A page from an origin no
 * rule names is refused by the browser (fetch() rejects with a TypeError) and
 * nothing is stored.
 *
 * Needs /usr/bin/chromium (packaging/apt-packages-test.txt; .ci/run installs
 * it): outside CI the test is skipped with a message when it is missing.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import * as s3 from "@aws-sdk/client-s3";
import type { BrowserContext } from "playwright-core";
import { startCluster, type Cluster } from "./harness.js";
import { S3_ENV, presignedPath, s3client } from "./objectstore-util.js";

const CHROMIUM = "/usr/bin/chromium";
const missing = !existsSync(CHROMIUM);
const skip = missing && !process.env.CI ? `${CHROMIUM} is missing: apt-get install chromium (CI installs it from packaging/apt-packages-test.txt)` : false;

/** A page server on its own origin (127.0.0.1, a port of its own): serves one empty HTML page. */
async function pageServer(): Promise<{ origin: string; close: () => Promise<void> }> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    res.end("<!doctype html><html><head><title>browser upload</title></head><body>upload</body></html>");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return { origin: `http://127.0.0.1:${port}`, close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

/** What the page's fetch() calls report back: the answer, or the error fetch() rejected with. */
type Outcome = { status: number; etag: string | null; body: number[] } | { error: string; message: string };

describe("CORS with headless Chromium against a --dev agent", { skip }, () => {
  let cluster: Cluster;
  let c: s3.S3Client;
  let browser: BrowserContext;
  let profile: string;
  let allowed: Awaited<ReturnType<typeof pageServer>>;
  let other: Awaited<ReturnType<typeof pageServer>>;

  before(async () => {
    assert.ok(!missing, `${CHROMIUM} is missing; in CI .ci/run installs it (packaging/apt-packages-test.txt)`);
    profile = await mkdtemp(path.join(tmpdir(), "thoc-chromium-"));
    // A devDependency: a checkout whose node_modules predates it says so instead of failing to load the file.
    const { chromium } = await import("playwright-core").catch((err: unknown) => {
      throw new Error(`playwright-core is not installed (a devDependency): run npm ci. ${(err as Error).message}`);
    });
    // The agent and the browser start side by side (each takes a few seconds); all settle before a failure is
    // thrown, so after() stops whatever did start.
    const started = await Promise.allSettled([
      startCluster(1, { env: S3_ENV }).then((x) => { cluster = x; }),
      chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM, headless: true, timeout: 20_000,
        args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
          "--disable-component-update", "--disable-sync"],
      }).then((x) => { browser = x; }),
      pageServer().then((x) => { allowed = x; }), pageServer().then((x) => { other = x; }),
    ]);
    for (const r of started) if (r.status === "rejected") throw r.reason;
    c = s3client(cluster.agents[0]!);
  });
  after(async () => {
    await browser?.close().catch(() => undefined);
    await Promise.all([cluster?.stop(), allowed?.close(), other?.close()]);
    c?.destroy();
    if (profile) await rm(profile, { recursive: true, force: true });
  });

  /** Opens `origin`'s page and runs a PUT (with `put`'s bytes) or a GET of `url` from it with fetch(). */
  async function fromPage(origin: string, method: "PUT" | "GET", url: string, put?: Buffer): Promise<Outcome> {
    const page = await browser.newPage();
    try {
      await page.goto(`${origin}/`);
      return await page.evaluate(async ({ method, url, bytes }) => {
        try {
          const r = await fetch(url, method === "PUT"
            // application/octet-stream is not a CORS-safelisted type: with PUT, the browser preflights.
            ? { method, body: new Uint8Array(bytes), headers: { "Content-Type": "application/octet-stream" } }
            : { method });
          return { status: r.status, etag: r.headers.get("ETag"), body: [...new Uint8Array(await r.arrayBuffer())] };
        } catch (e) {
          return { error: (e as Error).name, message: (e as Error).message };
        }
      }, { method, url, bytes: put ? [...put] : [] });
    } finally {
      await page.close();
    }
  }

  test("a page on an allowed origin uploads with a presigned PUT and reads the exposed ETag; another origin is refused by the browser", { timeout: 60_000 }, async () => {
    const a = cluster.agents[0]!;
    await c.send(new s3.CreateBucketCommand({ Bucket: "webapp" }));
    await c.send(new s3.PutBucketCorsCommand({ Bucket: "webapp", CORSConfiguration: { CORSRules: [
      { AllowedOrigins: [allowed.origin], AllowedMethods: ["PUT", "GET"], AllowedHeaders: ["*"], ExposeHeaders: ["ETag"], MaxAgeSeconds: 60 },
    ] } }));
    // Every byte value, so a text conversion anywhere on the way would show.
    const body = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(20_000)]);

    const put = await fromPage(allowed.origin, "PUT", `${a.s3Url}${await presignedPath(a, "PUT", "webapp", "from-browser.bin")}`, body);
    assert.ok(!("error" in put), `the allowed origin's PUT failed in the browser: ${JSON.stringify(put)}`);
    assert.equal(put.status, 200);
    const head = await c.send(new s3.HeadObjectCommand({ Bucket: "webapp", Key: "from-browser.bin" }));
    assert.equal(put.etag, head.ETag, "the PUT's ETag is readable by the page (ExposeHeaders)");
    const stored = Buffer.from(await (await c.send(new s3.GetObjectCommand({ Bucket: "webapp", Key: "from-browser.bin" }))).Body!.transformToByteArray());
    assert.ok(stored.equals(body), `stored ${stored.length} bytes, sent ${body.length}: not byte-exact`);

    const get = await fromPage(allowed.origin, "GET", `${a.s3Url}${await presignedPath(a, "GET", "webapp", "from-browser.bin")}`);
    assert.ok(!("error" in get), `the allowed origin's GET failed in the browser: ${JSON.stringify(get)}`);
    assert.equal(get.status, 200);
    assert.equal(get.etag, head.ETag);
    assert.ok(Buffer.from(get.body).equals(body), "the page read the object back byte-exact");

    // No rule names this origin: the preflight is refused, so the browser never sends the PUT.
    const refused = await fromPage(other.origin, "PUT", `${a.s3Url}${await presignedPath(a, "PUT", "webapp", "refused.bin")}`, body);
    assert.ok("error" in refused, `the browser let a page of ${other.origin} upload: ${JSON.stringify(refused)}`);
    assert.equal(refused.error, "TypeError");
    await assert.rejects(c.send(new s3.HeadObjectCommand({ Bucket: "webapp", Key: "refused.bin" })), (e: { name: string }) => e.name === "NotFound");
    // Nor may it read: the GET's answer is withheld from the page.
    const hidden = await fromPage(other.origin, "GET", `${a.s3Url}${await presignedPath(a, "GET", "webapp", "from-browser.bin")}`);
    assert.ok("error" in hidden && hidden.error === "TypeError", `a page of ${other.origin} read the object: ${JSON.stringify(hidden).slice(0, 200)}`);
  });
});
