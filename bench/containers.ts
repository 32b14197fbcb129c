/**
 * Container benchmark (npm run bench -- containers): create-to-running and
 * delete through a real agent's ContainerService, beside `podman run -d` and
 * `podman rm -f` of the same image and command in the same run (the
 * physical baseline: what the engine itself needs, CLI process start
 * included, as an operator would type it). Target (issue 18): ours <= 1.2x.
 * Also the floor: the same create+start / remove through the engine's API
 * in-process (DockerEngine), no validation, record or gRPC.
 * Needs podman's API (bash test/setup-podman.sh); the image is built from
 * busybox-static (engine/testutil.ts), no registry.
 */
import { execFileSync } from "node:child_process";
import { performance } from "node:perf_hooks";
import { DockerEngine } from "../engine/index.js";
import { buildBusyboxImage, podmanEngineUri } from "../test/podman.js";
import { ContainerService } from "../proto/index.js";
import { createClient, credentials } from "../rpc/index.js";
import { startCluster } from "../test/harness.js";

const RUNS = Number(process.env.THOC_BENCH_CT_RUNS ?? 20);
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]!; };
const fmt = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(" ");
const CMD = ["sleep", "3600"];

const uri = await podmanEngineUri();
const sock = uri.replace(/^unix:\/\//, "");
const podman = (...a: string[]) => execFileSync("podman", ["--url", uri, ...a], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
const TAG = "localhost/thoc-bench-bb:1";
const archive = await buildBusyboxImage(TAG);

const c = await startCluster(1, { args: ["--log-level", "warn"], env: { THOC_CONTAINER_RUNTIME_URI: uri } });
const a = c.agents[0]!;
const client = createClient(ContainerService, a.clientAddress, { credentials: credentials.createInsecure(), defaultTimeoutMs: 120_000 });
const engine = new DockerEngine({ uri });
try {
  const imp = await a.cli(["ct", "image", "import", "bench-bb", archive], 120_000);
  if (imp.code !== 0) throw new Error(`ct image import: ${imp.stderr}`);
  // The first create loads the archive into the engine: untimed, and it makes the image present for podman run too.
  await client.createContainer({ spec: { name: "warm", image: "bench-bb", command: CMD } });
  await client.deleteContainer({ name: "warm" });
  // The archive's own tag: the engine holds the image under it once the first create loaded it.
  const ref = TAG;
  const ours: number[] = [], oursDel: number[] = [], base: number[] = [], baseDel: number[] = [], floor: number[] = [], floorDel: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const name = `b${process.pid}-${i}`;
    let t = performance.now();
    const r = await client.createContainer({ spec: { name, image: "bench-bb", command: CMD } });
    if (r.container?.status !== "running") throw new Error(`${name}: ${r.container?.status} ${r.container?.detail}`);
    ours.push(performance.now() - t);
    t = performance.now();
    await client.deleteContainer({ name });
    oursDel.push(performance.now() - t);

    const pname = `p${process.pid}-${i}`;
    t = performance.now();
    podman("run", "-d", "--name", pname, ref, ...CMD);
    base.push(performance.now() - t);
    t = performance.now();
    podman("rm", "-f", "-t", "0", pname);
    baseDel.push(performance.now() - t);

    const fname = `f${process.pid}-${i}`;
    t = performance.now();
    const id = await engine.create({ name: fname, image: ref, command: CMD, env: {}, labels: {}, ports: [], mounts: [], cpus: 0, memoryBytes: 0, devices: [] });
    await engine.start(id);
    floor.push(performance.now() - t);
    t = performance.now();
    await engine.remove(id, { force: true });
    floorDel.push(performance.now() - t);
  }
  const o = median(ours), b = median(base), od = median(oursDel), bd = median(baseDel);
  console.log(`containers, busybox image (imported archive), \`${CMD.join(" ")}\`, median of ${RUNS} (podman ${podman("--version").replace(/^podman version /, "")}, ${sock}):`);
  console.log(`  create->running  ContainerService.CreateContainer ${o.toFixed(0)} ms | podman run -d ${b.toFixed(0)} ms | engine API in-process ${median(floor).toFixed(0)} ms | ratio to podman ${(o / b).toFixed(2)}x`);
  console.log(`  delete           ContainerService.DeleteContainer ${od.toFixed(0)} ms | podman rm -f ${bd.toFixed(0)} ms | engine API in-process ${median(floorDel).toFixed(0)} ms | ratio to podman ${(od / bd).toFixed(2)}x`);
  console.log(`  all runs (ms): create ${fmt(ours)}; podman run ${fmt(base)}; delete ${fmt(oursDel)}; podman rm ${fmt(baseDel)}`);
} finally {
  client.close();
  await engine.close();
  await c.stop();
}
