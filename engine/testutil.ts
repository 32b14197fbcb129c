/**
 * Test face of engine/: a real podman engine for tests, and a busybox image
 * built without a registry.
 *
 * - ensurePodmanService(): the engine URI tests use. THOC_TEST_ENGINE_URI if
 *   set; else /run/podman/podman.sock when it answers (test/setup-podman.sh
 *   starts it in CI); else a private `podman system service` on a socket in
 *   a temp dir, with its own containers.conf (runc, cgroupfs, ulimits this
 *   host allows), killed when the test process exits.
 * - buildBusyboxImage(tag): a docker-save (or OCI) archive of FROM scratch +
 *   busybox-static with its applet links, cached in os.tmpdir(). The image is
 *   removed from podman's store after saving so a test's loadImage really
 *   loads it.
 */
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readFile, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export const SYSTEM_PODMAN_SOCKET = "/run/podman/podman.sock";

/** GET /_ping on a unix socket: true when an engine answers OK within the timeout. */
export function pingSocket(socketPath: string, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    if (!existsSync(socketPath)) return resolve(false);
    const req = request({ socketPath, path: "/_ping", timeout: timeoutMs }, (res) => {
      let body = "";
      res.on("data", (b) => (body += String(b)));
      res.on("end", () => resolve(res.statusCode === 200 && body.trim() === "OK"));
    });
    req.on("timeout", () => { req.destroy(); resolve(false); });
    req.on("error", () => resolve(false));
    req.end();
  });
}

/** The hard limits of this process (what a service we start inherits). */
async function hardLimit(name: "Max open files" | "Max processes"): Promise<number> {
  const text = await readFile("/proc/self/limits", "utf8");
  const line = text.split("\n").find((l) => l.startsWith(name));
  const hard = line?.slice(26).trim().split(/\s+/)[1];
  return hard === undefined || hard === "unlimited" ? Infinity : Number(hard);
}

/**
 * containers.conf for a host without systemd and without CAP_SYS_RESOURCE
 * (CI machines, containers): runc (crun refuses hybrid cgroups), cgroupfs,
 * and ulimits the service may hand out. Podman's rootful default (nofile and
 * nproc 1048576) is above the service's hard limits there, and runc fails
 * with "error setting rlimit ... operation not permitted". Podman caps its
 * own nproc at kernel.pid_max, so nproc is capped there too.
 */
export async function containersConf(): Promise<string> {
  const pidMax = Number((await readFile("/proc/sys/kernel/pid_max", "utf8").catch(() => "32768")).trim()) || 32768;
  const nofile = Math.min(await hardLimit("Max open files"), 1048576);
  const nproc = Math.min(await hardLimit("Max processes"), pidMax, 1048576);
  return [
    "# thoc-node tests: runc + cgroupfs, ulimits within the service's own hard limits.",
    "[containers]",
    `default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]`,
    "[engine]",
    'cgroup_manager = "cgroupfs"',
    'runtime = "runc"',
    'events_logger = "file"',
    "",
  ].join("\n");
}

export interface PodmanService { uri: string; /** Whether this process started it (then stop() ends it). */ started: boolean; stop(): Promise<void> }

let service: Promise<PodmanService> | undefined;

/** The engine tests talk to (see the file comment); one per test process. */
export function ensurePodmanService(): Promise<PodmanService> {
  service ??= startOrFind();
  return service;
}

/** Shorthand: the URI of ensurePodmanService(). */
export async function podmanEngineUri(): Promise<string> {
  return (await ensurePodmanService()).uri;
}

async function startOrFind(): Promise<PodmanService> {
  const env = process.env.THOC_TEST_ENGINE_URI;
  if (env) return { uri: env, started: false, stop: async () => undefined };
  if (await pingSocket(SYSTEM_PODMAN_SOCKET)) return { uri: `unix://${SYSTEM_PODMAN_SOCKET}`, started: false, stop: async () => undefined };
  return startPodmanService();
}

/**
 * A private `podman system service` on a socket in a temp dir (its own
 * containers.conf; `registriesConf`: a registries.conf for it alone, e.g. an
 * insecure test registry), ended by stop() or when the test process exits.
 */
export async function startPodmanService(o: { registriesConf?: string } = {}): Promise<PodmanService> {
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-podman-"));
  const conf = path.join(dir, "containers.conf");
  await writeFile(conf, await containersConf());
  const env: NodeJS.ProcessEnv = { ...process.env, CONTAINERS_CONF: conf };
  if (o.registriesConf !== undefined) {
    env.CONTAINERS_REGISTRIES_CONF = path.join(dir, "registries.conf");
    await writeFile(env.CONTAINERS_REGISTRIES_CONF, o.registriesConf);
  }
  const sock = path.join(dir, "podman.sock");
  // --time: an orphaned service (test process killed) exits by itself after a minute idle.
  const child: ChildProcess = spawn("podman", ["system", "service", "--time=60", `unix://${sock}`], { env, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (b) => (stderr = (stderr + String(b)).slice(-4000)));
  const spawnError = new Promise<never>((_, reject) => child.once("error", (e) => reject(new Error(`cannot start podman (apt-get install podman runc): ${e.message}`))));
  const kill = () => { if (child.exitCode === null) child.kill("SIGTERM"); };
  process.once("exit", kill);
  const deadline = Date.now() + 20_000;
  const ready = (async () => {
    while (!(await pingSocket(sock, 500))) {
      if (child.exitCode !== null) throw new Error(`podman system service exited (${child.exitCode}): ${stderr}`);
      if (Date.now() > deadline) { kill(); throw new Error(`podman system service did not answer on ${sock} within 20 s: ${stderr}`); }
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  await Promise.race([ready, spawnError]);
  return {
    uri: `unix://${sock}`,
    started: true,
    async stop() {
      process.removeListener("exit", kill);
      if (child.exitCode === null) {
        const gone = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A docker-save ("docker", default) or OCI ("oci") archive of a busybox image
 * tagged `tag`, built from busybox-static: FROM scratch, /bin/busybox and a
 * link per applet (no RUN step, so building needs no OCI runtime). Cached in
 * os.tmpdir() by tag and busybox binary; built atomically (rename), so
 * parallel test processes may ask at once.
 */
export async function buildBusyboxImage(tag = "localhost/thoc-test-busybox:1", format: "docker" | "oci" = "docker"): Promise<string> {
  const bb = "/bin/busybox";
  const st = await stat(bb).catch(() => undefined);
  if (!st) throw new Error("buildBusyboxImage: /bin/busybox is missing (apt-get install busybox-static)");
  const key = createHash("sha256").update(`${tag}\0${st.size}\0${st.mtimeMs}`).digest("hex").slice(0, 16);
  const out = path.join(tmpdir(), `thoc-busybox-${key}-${format}.tar`);
  if (existsSync(out)) return out;
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-busybox-build-"));
  try {
    const bin = path.join(dir, "rootfs", "bin");
    await mkdir(bin, { recursive: true });
    await copyFile(bb, path.join(bin, "busybox"));
    const { stdout } = await run(bb, ["--list"]);
    for (const applet of stdout.split("\n").map((s) => s.trim()).filter((s) => s && s !== "busybox" && !s.includes("/"))) {
      await symlink("busybox", path.join(bin, applet));
    }
    await writeFile(path.join(dir, "Containerfile"), 'FROM scratch\nCOPY rootfs/ /\nCMD ["/bin/sh"]\n');
    await run("podman", ["build", "-q", "-t", tag, dir]);
    const tmp = path.join(dir, "image.tar");
    await run("podman", ["save", "-q", "--format", format === "oci" ? "oci-archive" : "docker-archive", "-o", tmp, tag]);
    await run("podman", ["rmi", tag]).catch(() => undefined);
    await rename(tmp, out);
    return out;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
