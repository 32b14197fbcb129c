/**
 * ContainerManager on real podman (DockerEngine, engine/testutil.ts finds or
 * starts the service): a busybox image loaded from an archive (no registry),
 * an httpd reached over its mapped port, env and volume data across a
 * restart, exec exit codes, health turning unhealthy and back, the restart
 * policy after a crash, and refusals that leave nothing behind.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createReadStream } from "node:fs";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { DockerEngine, type ExecSession } from "../engine/index.js";
import { buildBusyboxImage, ensurePodmanService } from "../engine/testutil.js";
import { LocalStore } from "../store/index.js";
import { ContainerManager } from "./manager.js";
import { spec, until } from "./testutil.js";
import type { ContainerRecord } from "./types.js";

const RUN = `h2t${process.pid}`;
const TAG = "localhost/thoc-test-busybox:ct";
let f: { dir: string; store: LocalStore; m: ContainerManager; cleanup(): Promise<void> };
let engine: DockerEngine;

const freePort = () => new Promise<number>((resolve, reject) => {
  const s = createServer();
  s.once("error", reject);
  s.listen(0, "0.0.0.0", () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)); });
});

async function run(s: ExecSession): Promise<{ out: string; code: number }> {
  let out = "";
  s.onOutput((_st, d) => { out += d.toString(); });
  const c = await s.exit;
  return { out, code: c };
}

before(async () => {
  const svc = await ensurePodmanService();
  engine = new DockerEngine({ uri: svc.uri });
  await engine.loadImage(createReadStream(await buildBusyboxImage(TAG)));
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-ctp-"));
  const store = await LocalStore.open(path.join(dir, "data"));
  // Health checks every second here; restarts wait the real back-off (1 s).
  const m = new ContainerManager({
    engine, engineUri: svc.uri, records: store.json<ContainerRecord>("container"), volumesDir: path.join(dir, "data", "volumes"), node: "n1", nodeId: RUN,
    host: () => ({ cpus: 4, memoryBytes: 8 * 2 ** 30 }), loadFactor: 1, stopTimeoutMs: 2000, healthDefaults: { intervalS: 1, retries: 2 },
  });
  await m.open();
  f = { dir, store, m, async cleanup() { m.close(); await engine.close(); await store.close(); await rm(dir, { recursive: true, force: true }); } };
});

after(async () => {
  for (const r of await f.m.list()) await f.m.delete(r.name).catch(() => undefined);
  for (const c of await engine.list(`thoc.node-id=${RUN}`)) await engine.remove(c.id, { force: true }).catch(() => undefined);
  await f.cleanup();
});

test("on podman: httpd over the mapped port, env, volume data across a restart, exec exit codes, delete leaves nothing", async () => {
  const port = await freePort();
  const name = `${RUN}-web`;
  const r = await f.m.create(spec({
    name, image: TAG, env: { GREETING: "hello" }, ports: [{ containerPort: 8080, hostPort: port }],
    volumes: [{ name: `${RUN}-data`, containerPath: "/www" }], command: ["sh", "-c", "echo $GREETING > /www/env.txt; exec httpd -f -p 8080 -h /www"],
  }));
  assert.equal(r.status, "running");
  await until(async () => (await fetch(`http://127.0.0.1:${port}/env.txt`).then((x) => x.text(), () => "")) === "hello\n", "httpd serves the env file");
  await writeFile(path.join(f.dir, "data", "volumes", `${RUN}-data`, "kept.txt"), "kept\n");
  await f.m.restart(name);
  await until(async () => (await fetch(`http://127.0.0.1:${port}/kept.txt`).then((x) => x.text(), () => "")) === "kept\n", "volume data after a restart");
  assert.deepEqual(await run(await f.m.exec(name, { command: ["sh", "-c", "echo $GREETING; exit 3"], tty: false, stdin: false })), { out: "hello\n", code: 3 });
  await f.m.stop(name);
  await assert.rejects(f.m.exec(name, { command: ["true"], tty: false, stdin: false }), (e: { code?: string }) => e.code === "failed_precondition");
  assert.deepEqual(await f.m.delete(name), [`${RUN}-data`]);
  assert.equal(await engine.inspect(`thoc-${name}`), undefined);
});

test("on podman: health unhealthy and back; a crash restarted by the policy; refusals leave nothing", async () => {
  const port = await freePort();
  const name = `${RUN}-hc`;
  await f.m.create(spec({
    name, image: TAG, ports: [{ containerPort: 8080, hostPort: port }], healthCheckPath: "/ok",
    command: ["sh", "-c", "mkdir -p /w; echo ok > /w/ok; exec httpd -f -p 8080 -h /w"],
  }));
  await until(async () => (await f.m.get(name)).health === "healthy", "healthy", 15_000);
  await run(await f.m.exec(name, { command: ["rm", "/w/ok"], tty: false, stdin: false }));
  await until(async () => (await f.m.get(name)).status === "unhealthy", "unhealthy", 15_000);
  await run(await f.m.exec(name, { command: ["sh", "-c", "echo ok > /w/ok"], tty: false, stdin: false }));
  await until(async () => (await f.m.get(name)).status === "running", "running again", 15_000);
  // A process that fails: on-failure starts it again after 1 s, then 2 s.
  const crashy = `${RUN}-crashy`;
  await f.m.create(spec({ name: crashy, image: TAG, command: ["sh", "-c", "sleep 1; exit 3"] }));
  await until(async () => (await f.m.get(crashy)).restartCount >= 1, "restarted by the policy", 20_000);
  const c = await f.m.get(crashy);
  assert.equal(c.exitCode === 3 || c.status === "running", true, JSON.stringify(c));
  await f.m.delete(crashy);

  // The port is now taken: a second container on it is refused, nothing kept.
  await assert.rejects(f.m.create(spec({ name: `${RUN}-dup`, image: TAG, ports: [{ containerPort: 80, hostPort: port }] })), (e: { code?: string }) => e.code === "resource_exhausted");
  const blocker = createServer();
  const busy = await freePort();
  await new Promise<void>((res) => blocker.listen(busy, "0.0.0.0", res));
  try {
    await assert.rejects(f.m.create(spec({ name: `${RUN}-busy`, image: TAG, command: ["sleep", "60"], ports: [{ containerPort: 80, hostPort: busy }], volumes: [{ name: `${RUN}-bv`, containerPath: "/d" }] })),
      (e: { code?: string; message: string }) => e.code === "resource_exhausted" || assert.fail(e.message));
  } finally { blocker.close(); }
  assert.equal(await engine.inspect(`thoc-${RUN}-busy`), undefined);
  assert.ok(!(await readdir(path.join(f.dir, "data", "volumes"))).includes(`${RUN}-bv`));
  await assert.rejects(f.m.create(spec({ name: `${RUN}-nope`, image: "localhost/thoc-no-such-image:1" })), (e: { code?: string }) => e.code === "not_found");
  assert.equal(await engine.inspect(`thoc-${RUN}-nope`), undefined);
  await assert.rejects(f.m.create(spec({ name: `${RUN}-gpu`, image: TAG, gpuDeviceIds: ["GPU-0"] })), /has no GPUs/);
  await f.m.delete(name);
});
