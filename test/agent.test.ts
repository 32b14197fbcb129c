/**
 * Issue 2's must-shows, against real agent processes: readiness, status
 * JSON, gRPC health and reflection, promtool-clean /metrics, side-by-side dev
 * agents, node id persistence, the data-dir lock, config errors, SIGTERM draining an
 * S3 PUT in flight.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import net from "node:net";
import * as s3 from "@aws-sdk/client-s3";
import { ImageService, NodeService } from "../proto/index.js";
import { createClient, credentials } from "../rpc/index.js";
import { AgentProcess, REPO_ROOT, loopbackBlock, runCli, sleep, waitFor } from "./harness.js";
import { S3_ENV, presignedPutPath, s3client } from "./objectstore-util.js";

const root = await mkdtemp(path.join(tmpdir(), "thoc-agent-test-"));
const block = loopbackBlock();
const agents: AgentProcess[] = [];
const agent = (i: number, name = `a${i}`, dataDir = path.join(root, name)) => {
  // These are the dev agent's must-shows (banner, generated defaults): dev mode whatever THOC_TEST_MODE says.
  const a = new AgentProcess(name, `${block}.${i}`, dataDir, { dev: true });
  agents.push(a);
  return a;
};
after(async () => {
  await Promise.all(agents.map((a) => a.kill("SIGKILL")));
  await rm(root, { recursive: true, force: true });
});

test("dev agent becomes ready and status --json has the identity and capacity", async () => {
  // How fast is a benchmark's question (bench/); here only that it gets there.
  const a = agent(2);
  await a.start();
  const r = await a.cli(["status", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout) as Record<string, unknown> & { capacity: Record<string, number> };
  assert.match(String(s.id), /^[0-9a-f-]{36}$/);
  assert.equal(s.name, "a2");
  assert.match(String(s.version), /^\d+\.\d+\.\d+/);
  assert.equal(s.grpcAddress, `${a.bind}:7400`);
  assert.ok(s.capacity.cpus >= 1);
  assert.ok(s.capacity.memoryBytes > 1e8);
  assert.equal(s.ready, true);
  const text = await a.cli(["status"]);
  assert.equal(text.code, 0);
  assert.match(text.stdout, /ready\s+yes/);
  // The start banner's hint works as printed (it once put --addr after the subcommand, which the CLI refuses).
  const hint = /gRPC\s+\S+\s+thoc-node (.+?)\s*$/m.exec(a.output);
  assert.ok(hint, `no gRPC hint in the banner:\n${a.output.slice(0, 2000)}`);
  const viaHint = await runCli(hint[1]!.split(/\s+/));
  assert.equal(viaHint.code, 0, viaHint.stderr);
  assert.match(viaHint.stdout, /ready\s+yes/);
  // The banner says plainly that a dev agent authenticates nobody.
  assert.match(a.output, /auth\s+OFF: --dev serves every caller as admin/);
});

test("gRPC health answers SERVING and reflection lists thoc.node.v1.NodeService", async () => {
  const a = agents[0]!;
  const dir = path.join(REPO_ROOT, "node_modules/@grpc/reflection/build/proto");
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(path.join(dir, "grpc/reflection/v1/reflection.proto"), { includeDirs: [dir] })) as any;
  const refl = new pkg.grpc.reflection.v1.ServerReflection(a.grpcAddress, grpc.credentials.createInsecure());
  const services = await new Promise<string[]>((resolve, reject) => {
    const call = refl.ServerReflectionInfo();
    call.on("data", (r: any) => { resolve(r.listServicesResponse.service.map((s: any) => s.name)); call.end(); });
    call.on("error", reject);
    call.write({ listServices: "" });
  });
  assert.ok(services.includes("thoc.node.v1.NodeService"), services.join(","));
  assert.ok(services.includes("grpc.health.v1.Health"));
  // The descriptor behind the name resolves too (what grpcurl describe needs).
  const fileBytes = await new Promise<Buffer[]>((resolve, reject) => {
    const call = refl.ServerReflectionInfo();
    call.on("data", (r: any) => { call.end(); r.errorResponse ? reject(new Error(r.errorResponse.errorMessage)) : resolve(r.fileDescriptorResponse.fileDescriptorProto); });
    call.on("error", reject);
    call.write({ fileContainingSymbol: "thoc.node.v1.NodeService" });
  });
  assert.ok(fileBytes.length >= 1 && fileBytes.some((b) => b.includes(Buffer.from("thoc/node/v1/node.proto"))));
  refl.close();

  const hdir = path.join(REPO_ROOT, "node_modules/grpc-health-check/proto/health/v1");
  const hpkg = grpc.loadPackageDefinition(protoLoader.loadSync(path.join(hdir, "health.proto"), { enums: String })) as any;
  const health = new hpkg.grpc.health.v1.Health(a.grpcAddress, grpc.credentials.createInsecure());
  for (const service of ["", "thoc.node.v1.NodeService"]) {
    const res = await new Promise<any>((resolve, reject) => health.Check({ service }, (e: Error | null, r: any) => (e ? reject(e) : resolve(r))));
    assert.equal(res.status, "SERVING", `service '${service}'`);
  }
  health.close();
});

test("/metrics passes promtool and counts gRPC calls; /healthz and /readyz answer", async () => {
  const a = agents[0]!;
  assert.equal((await fetch(`${a.httpUrl}/healthz`)).status, 200);
  const ready = await fetch(`${a.httpUrl}/readyz`);
  assert.equal(ready.status, 200);
  assert.equal((await ready.json() as { ready: boolean }).ready, true);
  const text = await (await fetch(`${a.httpUrl}/metrics`)).text();
  assert.match(text, /thoc_build_info\{version="[^"]+",node="a2"/);
  assert.match(text, /thoc_grpc_requests_total\{method="thoc.node.v1.NodeService\/GetNode",code="OK"\} \d+/);
  assert.match(text, /thoc_grpc_request_duration_seconds_bucket/);
  const promtool = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
  if (promtool.error) throw new Error("promtool not installed (Debian package prometheus): " + promtool.error.message);
  assert.equal(promtool.status, 0, promtool.stdout + promtool.stderr);
});

test("two dev agents run side by side on two loopback addresses with the default ports", async () => {
  const b = agent(3);
  await b.start();
  const [ra, rb] = await Promise.all([agents[0]!.cli(["status", "--json"]), b.cli(["status", "--json"])]);
  assert.notEqual(JSON.parse(ra.stdout).id, JSON.parse(rb.stdout).id);
  assert.equal(JSON.parse(rb.stdout).grpcAddress, `${b.bind}:7400`);
});

test("the node id survives a restart; a second agent on the same data dir is refused", async () => {
  const a = agents[0]!;
  const before = JSON.parse((await a.cli(["status", "--json"])).stdout).id;
  const intruder = agent(9, "intruder", a.dataDir);
  intruder.spawn();
  assert.equal(await intruder.waitExit(), 3);
  assert.match(intruder.output, /is in use by another agent \(pid \d+\)/);
  assert.doesNotMatch(intruder.output, /\n\s+at /, "no stack trace");

  assert.equal(await a.kill("SIGTERM"), 0);
  await a.start();
  const afterId = JSON.parse((await a.cli(["status", "--json"])).stdout).id;
  assert.equal(afterId, before);
});

test("SIGTERM with an S3 PUT in flight: the PUT completes and is durable, the agent exits 0", async () => {
  const c = new AgentProcess("a4", `${block}.4`, path.join(root, "a4"), { dev: true, env: S3_ENV });
  agents.push(c);
  await c.start();
  await s3client(c).send(new s3.CreateBucketCommand({ Bucket: "drain" }));
  const body = randomBytes(256 << 10);
  const half = body.length / 2;
  const sock = net.connect(7480, c.bind);
  let reply = "";
  sock.on("data", (b: Buffer) => { reply += b.toString("latin1"); });
  const closed = once(sock, "close");
  await once(sock, "connect");
  sock.write(`PUT ${await presignedPutPath(c, "drain", "in-flight")} HTTP/1.1\r\nHost: ${c.bind}:7480\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`);
  // "100 Continue" comes from the request handler: the PUT is in flight on the agent, not queued in a socket.
  await waitFor("100 Continue", () => reply.startsWith("HTTP/1.1 100"), 10_000, 20);
  sock.write(body.subarray(0, half));
  const exit = c.kill("SIGTERM");
  await sleep(300);
  sock.write(body.subarray(half));
  assert.equal(await exit, 0, c.output.slice(-2000));
  await closed;
  const final = reply.slice(reply.indexOf("\r\n\r\n") + 4);
  assert.match(final, /^HTTP\/1\.1 200 /, reply);
  assert.match(final, new RegExp(`ETag: "${createHash("md5").update(body).digest("hex")}"`, "i"));
  // Acknowledged before the exit, so it is on disk after a restart.
  await c.start();
  const got = await s3client(c).send(new s3.GetObjectCommand({ Bucket: "drain", Key: "in-flight" }));
  assert.ok(Buffer.from(await got.Body!.transformToByteArray()).equals(body));
});

test("SIGTERM with a gRPC image import in flight: it completes; new gRPC and S3 calls are refused; exit 0", async () => {
  const c = new AgentProcess("a6", `${block}.6`, path.join(root, "a6"), { dev: true, env: S3_ENV });
  agents.push(c);
  await c.start();
  const images = createClient(ImageService, c.clientAddress, { credentials: credentials.createInsecure(), defaultTimeoutMs: 30_000 });
  const kernel = randomBytes(1 << 20);
  const sha = createHash("sha256").update(kernel).digest("hex");
  let resume!: () => void;
  const halfSent = new Promise<void>((r) => { resume = r; });
  let sentHalf!: () => void;
  const atHalf = new Promise<void>((r) => { sentHalf = r; });
  async function* chunks() {
    yield { meta: { name: "drain", cmdline: "", sha256: { kernel: sha }, replace: false }, part: "", data: new Uint8Array() };
    yield { part: "kernel", data: kernel.subarray(0, kernel.length / 2) };
    sentHalf();
    await halfSent;
    yield { part: "kernel", data: kernel.subarray(kernel.length / 2) };
  }
  try {
    const imported = images.importImage(chunks());
    await atHalf;
    await sleep(200); // the first half is on the agent: the call is in flight there
    const exit = c.kill("SIGTERM");
    // While the import drains (dev: half of shutdownTimeout 3 s), new calls on new connections are refused at once,
    // on the gRPC port and on the S3 port alike (every listener stops accepting when shutdown begins).
    const node = createClient(NodeService, c.clientAddress, { credentials: credentials.createInsecure(), defaultTimeoutMs: 300 });
    const s3Refused = () => new Promise<boolean>((resolve) => {
      const s = net.connect(7480, c.bind);
      s.once("connect", () => { s.destroy(); resolve(false); });
      s.once("error", (e: NodeJS.ErrnoException) => resolve(e.code === "ECONNREFUSED"));
    });
    try {
      const refused = await waitFor("new gRPC and S3 calls refused", async () => {
        const g = await node.getNode({}).then(() => undefined, (e: { code?: string }) => e.code);
        return g === "unavailable" && (await s3Refused()) ? g : undefined;
      }, 1_000, 20);
      assert.equal(refused, "unavailable");
    } finally {
      node.close();
    }
    resume();
    const { image } = await imported;
    assert.equal(image?.name, "drain");
    assert.equal(image?.files[0]?.sha256, sha, "the import finished with every byte");
    assert.equal(await exit, 0, c.output.slice(-2000));
  } finally {
    resume();
    images.close();
  }
});

test("a bad config value and an unknown key each exit 2 with one line naming the key", async () => {
  const cases: [string, RegExp][] = [
    ["grpcPort: 99999\n", /config: grpcPort: expected an integer from 0 to 65535, got 99999/],
    ["gossip:\n  probeIntervall: 1s\n", /config: gossip\.probeIntervall: unknown key/],
    ["gossip:\n  probeInterval: soon\n", /config: gossip\.probeInterval: expected a duration/],
    ["objectstore:\n  readQuorum: 1\n  writeQuorum: 1\n", /config: objectstore\.readQuorum: readQuorum \+ writeQuorum must exceed replicas/],
  ];
  for (const [yaml, re] of cases) {
    const f = path.join(root, "bad.yaml");
    await writeFile(f, yaml);
    const r = await runCli(["agent", "--dev", "--config", f, "--bind", `${block}.20`, "--data-dir", path.join(root, "bad")]);
    assert.equal(r.code, 2, `${yaml}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  }
  const env = await runCli(["agent", "--dev", "--bind", `${block}.20`, "--data-dir", path.join(root, "bad")], 20_000, { THOC_HTTP_PORT: "http" });
  assert.equal(env.code, 2);
  assert.match(env.stderr, /config: THOC_HTTP_PORT: expected an integer/);
  const flag = await runCli(["agent", "--dev", "--grpc-port", "-1", "--bind", `${block}.20`]);
  assert.equal(flag.code, 2);
  assert.match(flag.stderr, /--grpc-port/);
});

test("a port already in use is a clear error with exit 3, not a stack trace", async () => {
  const taken = agent(5);
  await taken.start();
  const clash = agent(5, "clash");
  clash.spawn();
  assert.equal(await clash.waitExit(), 3, clash.output);
  assert.match(clash.output, /address already in use/);
  assert.doesNotMatch(clash.output, /\n\s+at /);
});

test("CLI errors: unreachable agent is one line and exit 1", async () => {
  const r = await runCli(["--addr", `${block}.99:7400`, "--timeout", "1500", "status"]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  assert.match(r.stderr, /cannot reach the agent at|deadline|unavailable/i);
});
