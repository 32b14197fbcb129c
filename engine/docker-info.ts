/**
 * Where the engine is (runtimeUri -> dockerode options) and what it is
 * (GET /version, /info, and podman's /libpod/info): podman or Docker, its
 * cgroup manager and version, OCI runtime, GPU support, port mapping.
 */
import { readdir, statfs } from "node:fs/promises";
import { ThocError } from "../errors/index.js";
import type { EngineInfo } from "./types.js";

export type Endpoint = { socketPath: string } | { host: string; port: number; protocol: "http" };

/** unix:///run/podman/podman.sock, unix:///var/run/docker.sock, tcp://host:port. */
export function parseRuntimeUri(uri: string): Endpoint {
  const bad = (why: string) => new ThocError("invalid_argument", `container.runtimeUri ${JSON.stringify(uri)}: ${why} (e.g. unix:///run/podman/podman.sock or tcp://127.0.0.1:2375)`, { uri });
  if (uri.startsWith("unix://")) {
    const p = uri.slice("unix://".length);
    if (!p.startsWith("/")) throw bad("a unix socket path must be absolute");
    return { socketPath: p };
  }
  if (uri.startsWith("tcp://")) {
    let u: URL;
    try {
      u = new URL(`http://${uri.slice("tcp://".length)}`);
    } catch {
      throw bad("not host:port");
    }
    const port = Number(u.port);
    if (!u.hostname || !Number.isInteger(port) || port < 1 || (u.pathname !== "/" && u.pathname !== "")) throw bad("tcp:// needs host:port");
    return { host: u.hostname.replace(/^\[|\]$/g, ""), port, protocol: "http" };
  }
  throw bad("only unix:// and tcp:// are supported");
}

interface VersionBody { Version?: string; ApiVersion?: string; Components?: Array<{ Name?: string; Version?: string }> }
interface InfoBody { CgroupDriver?: string; CgroupVersion?: string; DefaultRuntime?: string; Runtimes?: Record<string, unknown>; Rootless?: boolean }
interface LibpodInfoBody { host?: { cgroupManager?: string; cgroupVersion?: string; networkBackend?: string; ociRuntime?: { name?: string } } }

/** CDI spec directories (the Container Device Interface: nvidia-ctk cdi generate writes here). */
export const CDI_DIRS = ["/etc/cdi", "/var/run/cdi"];

/** cgroup2's filesystem magic (statfs f_type). */
const CGROUP2_MAGIC = 0x63677270;

/**
 * Engines say "1" on a hybrid host (v1 controllers, cgroup2 mounted at
 * /sys/fs/cgroup/unified). When the engine is on this host (a unix socket) we
 * look ourselves, because crun refuses hybrid hosts and the operator should
 * see why runc is needed.
 */
async function localCgroupVersion(reported: string): Promise<string> {
  if (reported !== "1") return reported;
  try {
    const s = await statfs("/sys/fs/cgroup/unified");
    return s.type === CGROUP2_MAGIC ? "hybrid" : reported;
  } catch {
    return reported;
  }
}

async function cdiSpecsPresent(dirs: string[]): Promise<boolean> {
  for (const d of dirs) {
    const names = await readdir(d).catch(() => [] as string[]);
    if (names.some((n) => /\.(json|ya?ml)$/.test(n))) return true;
  }
  return false;
}

export interface InfoSources {
  version: VersionBody;
  info: InfoBody;
  /** Only from podman. */
  libpod?: LibpodInfoBody;
}

export function isPodman(v: VersionBody): boolean {
  return (v.Components ?? []).some((c) => /podman/i.test(c.Name ?? ""));
}

/** The engine facts from its answers; `local` when the engine runs on this host (unix socket). */
export async function engineInfo(uri: string, src: InfoSources, local: boolean, cdiDirs = CDI_DIRS): Promise<EngineInfo> {
  const podman = isPodman(src.version);
  const podmanVersion = (src.version.Components ?? []).find((c) => /podman/i.test(c.Name ?? ""))?.Version;
  const reportedCg = String(src.libpod?.host?.cgroupVersion ?? src.info.CgroupVersion ?? "").replace(/^v/, "");
  const runtimes = Object.keys(src.info.Runtimes ?? {});
  // Docker gives GPUs through the nvidia runtime or CDI (25+); podman through CDI only. The CDI
  // directories are only readable here when the engine is on this host.
  const gpus = (local && (await cdiSpecsPresent(cdiDirs))) || (!podman && runtimes.includes("nvidia"));
  // Podman maps ports with netavark or CNI (rootful) or rootlessport; Docker always can.
  const backend = src.libpod?.host?.networkBackend ?? "";
  const portMapping = podman ? backend === "netavark" || backend === "cni" || src.info.Rootless === true : true;
  return {
    uri,
    engine: podman ? "podman" : "docker",
    version: (podman ? podmanVersion : undefined) ?? src.version.Version ?? "",
    apiVersion: src.version.ApiVersion ?? "",
    cgroupManager: src.libpod?.host?.cgroupManager ?? src.info.CgroupDriver ?? "",
    cgroupVersion: local ? await localCgroupVersion(reportedCg) : reportedCg,
    ociRuntime: src.libpod?.host?.ociRuntime?.name ?? src.info.DefaultRuntime ?? "",
    gpus,
    portMapping,
  };
}
