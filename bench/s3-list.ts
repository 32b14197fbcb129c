/**
 * Listing at scale on one agent: ListObjectsV2 over BENCH_LIST_KEYS (default
 * 100,000) keys, paged 1,000 at a time, flat and with a delimiter, in an
 * unversioned bucket and — when the agent supports versioning — in a
 * versioned bucket holding the same keys plus overwrites (old versions) and
 * delete markers, which a V2 listing must skip without scanning them.
 * Baseline measured in the same run: signed-request round trips to a raw
 * Node HTTP server over loopback (the floor under every page) and the keys a
 * page carries, so the figure to compare is keys/s against pages/s.
 *
 * Run: npm run build && node dist/bench/s3-list.js   (BENCH_LIST_KEYS, BENCH_LIST_ROUNDS=3)
 */
import http from "node:http";
import { loadavg } from "node:os";
import { rawServer, sigv4 } from "./common.js";
import { startCluster, type Cluster } from "../test/harness.js";

const ACCESS = "THOCBENCH00000000001";
const SECRET = "bench-secret-0123456789abcdefghijklmnopq";
const N = Math.max(1000, Number(process.env.BENCH_LIST_KEYS ?? 100_000));
const ROUNDS = Math.max(1, Number(process.env.BENCH_LIST_ROUNDS ?? 3));
const CONCURRENCY = 64;
const auth = sigv4(ACCESS, SECRET, "us-east-1");
const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });

function call(base: URL, method: string, p: string, query = "", body = ""): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: base.hostname, port: base.port, method, path: p + (query ? "?" + query : ""), agent,
      headers: { ...auth(method, base.host, p, query), "content-length": String(Buffer.byteLength(body)) },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, text: Buffer.concat(chunks).toString() }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

const key = (i: number) => `d${String(i % 100).padStart(2, "0")}/k${String(i).padStart(7, "0")}`;

async function fill(base: URL, bucket: string, n: number, op: (i: number) => [string, string]): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < n) {
      const i = next++;
      const [method, k] = op(i);
      const r = await call(base, method, `/${bucket}/${k}`, "", method === "PUT" ? "x" : "");
      if (r.status >= 300) throw new Error(`${method} ${k}: ${r.status} ${r.text.slice(0, 200)}`);
    }
  }));
  return n / ((performance.now() - t0) / 1000);
}

/** A full ListObjectsV2 walk; returns keys seen, pages, seconds. */
async function walk(base: URL, bucket: string, delimiter?: string): Promise<{ keys: number; prefixes: number; pages: number; s: number }> {
  let token: string | undefined;
  let keys = 0, prefixes = 0, pages = 0;
  const t0 = performance.now();
  for (;;) {
    const params: [string, string][] = [["list-type", "2"], ["max-keys", "1000"]];
    if (delimiter) params.push(["delimiter", delimiter]);
    if (token) params.push(["continuation-token", token]);
    const q = params.sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join("&");
    const r = await call(base, "GET", `/${bucket}`, q);
    if (r.status !== 200) throw new Error(`list: ${r.status} ${r.text.slice(0, 200)}`);
    pages++;
    keys += (r.text.match(/<Contents>/g) ?? []).length;
    prefixes += (r.text.match(/<CommonPrefixes>/g) ?? []).length;
    token = /<NextContinuationToken>([^<]*)<\/NextContinuationToken>/.exec(r.text)?.[1];
    if (!token) break;
    token = token.replace(/&amp;/g, "&").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&apos;/g, "'");
  }
  return { keys, prefixes, pages, s: (performance.now() - t0) / 1000 };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function listRounds(base: URL, bucket: string, label: string, expect: number, prefixes = 100): Promise<void> {
  const flat: number[] = [], delim: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const w = await walk(base, bucket);
    if (w.keys !== expect) throw new Error(`${label}: listed ${w.keys} keys, expected ${expect}`);
    flat.push(w.s);
    const d = await walk(base, bucket, "/");
    if (d.prefixes !== prefixes) throw new Error(`${label}: ${d.prefixes} common prefixes, expected ${prefixes}`);
    delim.push(d.s);
  }
  const s = median(flat);
  console.log(`${label}: ListObjectsV2 of ${expect.toLocaleString("en")} keys in ${Math.ceil(expect / 1000)} pages: ${s.toFixed(2)} s (${Math.round(expect / s).toLocaleString("en")} keys/s, ${(s * 1000 / Math.ceil(expect / 1000)).toFixed(1)} ms/page); delimiter '/' (${prefixes} prefixes): ${(median(delim) * 1000).toFixed(0)} ms`);
}

async function main(): Promise<void> {
  const raw = await rawServer("127.0.0.1");
  const cluster: Cluster = await startCluster(1, { env: { THOC_S3_ACCESS_KEY: ACCESS, THOC_S3_SECRET_KEY: SECRET, THOC_LOG_LEVEL: "warn" }, args: ["--log-level", "warn"] });
  try {
    const base = new URL(cluster.agents[0]!.s3Url);
    // Baseline: small request round trips over loopback to a raw Node server.
    const t0 = performance.now();
    for (let i = 0; i < 500; i++) await call(raw.base, "GET", "/200000");
    console.log(`baseline: loopback round trip with a 200 KB answer (a page of 1,000 keys is ~250 KB of XML): ${((performance.now() - t0) / 500).toFixed(2)} ms`);
    console.log(`load average before: ${loadavg().map((x) => x.toFixed(1)).join(" ")}`);

    if ((await call(base, "PUT", "/flat")).status !== 200) throw new Error("create bucket failed");
    const putRate = await fill(base, "flat", N, (i) => ["PUT", key(i)]);
    console.log(`unversioned: ${N.toLocaleString("en")} 1-byte PUTs at concurrency ${CONCURRENCY}: ${Math.round(putRate)} PUT/s`);
    await listRounds(base, "flat", "unversioned", N);

    await call(base, "PUT", "/versioned");
    const on = await call(base, "PUT", "/versioned", "versioning=", '<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>');
    if (on.status !== 200) {
      console.log(`versioned: skipped (PutBucketVersioning answered ${on.status}: this build has no versioning)`);
    } else {
      const vRate = await fill(base, "versioned", N, (i) => ["PUT", key(i)]);
      const extra = Math.floor(N / 10);
      await fill(base, "versioned", extra, (i) => ["PUT", key(i * 10)]);
      await fill(base, "versioned", extra, (i) => ["DELETE", key(i * 10 + 1)]);
      console.log(`versioned: ${N.toLocaleString("en")} PUTs at ${Math.round(vRate)} PUT/s, then ${extra.toLocaleString("en")} overwrites (old versions) and ${extra.toLocaleString("en")} deletes (markers)`);
      // Keys i*10+1 all fall in the directories d01, d11, ... d91: those ten are left with delete markers only.
      const dirs = new Set(Array.from({ length: N }, (_, i) => i).filter((i) => i % 10 !== 1 || (i - 1) / 10 >= extra).map((i) => i % 100));
      await listRounds(base, "versioned", "versioned", N - extra, dirs.size);
    }
    console.log(`load average after: ${loadavg().map((x) => x.toFixed(1)).join(" ")}`);
  } finally {
    raw.stop();
    await cluster.stop();
  }
}

void main().catch((err: unknown) => { console.error(err); process.exit(1); });
