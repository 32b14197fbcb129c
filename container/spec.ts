/**
 * The container request (seed 004's APPLICATION_CONTAINER and
 * INFERENCE_CONTAINER) as plain data, and its validation. Every refusal names
 * the field and what would be accepted; nothing is touched before a spec is
 * valid. What only the node can judge (GPU ids that exist and are free, host
 * ports free, CPU and memory that fit) is the manager's admission.
 */
import { isIP } from "node:net";
import path from "node:path/posix";
import { ThocError } from "../errors/index.js";
import type { ContainerSpec as PbContainerSpec, CreateContainerRequest } from "../proto/index.js";
import type { ContainerKind, ContainerSpec, CreateOptions, PortSpec, RestartPolicy, VolumeSpec } from "./types.js";

/** Loose input: what a request or a test hands over before validation. */
export interface ContainerSpecInput {
  name?: string; kind?: string; image?: string; registry?: string;
  /** The password is used for the pull only (CreateOptions.registryPassword); validation keeps the username. */
  registryAuth?: { username?: string; password?: string };
  registryUser?: string;
  ports?: Partial<PortSpec>[];
  volumes?: Partial<VolumeSpec>[];
  env?: Record<string, string>;
  command?: string[];
  cpus?: number; memoryMB?: number;
  gpuDeviceIds?: string[];
  healthCheckPath?: string; healthIntervalS?: number; healthRetries?: number;
  restartPolicy?: string;
  modelId?: string; modelPath?: string;
  labels?: Record<string, string>;
}

export interface HealthDefaults { intervalS: number; retries: number }
export const HEALTH_DEFAULTS: HealthDefaults = { intervalS: 5, retries: 3 };

/** Container names share the cluster's namespace with VMs. */
export const CONTAINER_NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const VOLUME_NAME_RE = /^[a-z0-9][a-z0-9_.-]{0,62}$/;
const ENV_KEY_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Docker's reference grammar, loosely: [host[:port]/]path[:tag][@digest], no spaces. */
const IMAGE_RE = /^[a-zA-Z0-9][a-zA-Z0-9._\-/:]{0,254}(@sha256:[a-f0-9]{64})?$/;
const LABEL_KEY_RE = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$/;
const KINDS: readonly ContainerKind[] = ["app", "inference"];
const POLICIES: readonly RestartPolicy[] = ["no", "on-failure", "always"];
const REGISTRIES = ["docker-hub", "ghcr", "private"];
/** Set by the agent from model_id / model_path; a request may not set them itself. */
export const MODEL_ENV = { id: "THOC_MODEL_ID", path: "THOC_MODEL_PATH" } as const;
/** Docker's smallest memory limit. */
const MIN_MEMORY_MB = 6;

const bad = (field: string, msg: string) => new ThocError("invalid_argument", `${field}: ${msg}`, { field });
const hasNul = (s: string) => s.includes("\0");

/** An absolute path inside the container with no ".." (no way out of a mount) and no NUL. */
function containerPath(field: string, p: string): string {
  if (!p) throw bad(field, "missing: give an absolute path inside the container, e.g. /data");
  if (!p.startsWith("/")) throw bad(field, `"${p}" is not absolute: give a path starting with /`);
  if (hasNul(p) || p.split("/").includes("..")) throw bad(field, `"${p}" climbs out with "..": give a plain absolute path`);
  const norm = path.normalize(p).replace(/\/$/, "");
  if (!norm) throw bad(field, "/ cannot be a mount point: give a directory such as /data");
  return norm;
}

function ports(input: Partial<PortSpec>[]): PortSpec[] {
  if (input.length > 64) throw bad("ports", `${input.length} mappings; at most 64`);
  const seen = new Set<string>();
  return input.map((p, i) => {
    const f = `ports[${i}]`;
    const protocol = (p.protocol || "tcp") as PortSpec["protocol"];
    if (protocol !== "tcp" && protocol !== "udp") throw bad(`${f}.protocol`, `"${p.protocol}": use tcp or udp`);
    const containerPort = p.containerPort ?? 0, hostPort = p.hostPort ?? 0;
    if (!Number.isInteger(containerPort) || containerPort < 1 || containerPort > 65535) throw bad(`${f}.containerPort`, `${containerPort}: use 1-65535`);
    if (!Number.isInteger(hostPort) || hostPort < 0 || hostPort > 65535) throw bad(`${f}.hostPort`, `${hostPort}: use 1-65535 (0 lets the engine pick)`);
    const hostIp = p.hostIp ?? "";
    if (hostIp && !isIP(hostIp)) throw bad(`${f}.hostIp`, `"${hostIp}" is not an IP address`);
    if (hostPort) {
      const key = `${hostPort}/${protocol}`;
      if (seen.has(key)) throw bad(`${f}.hostPort`, `host port ${key} is mapped twice`);
      seen.add(key);
    }
    return { containerPort, hostPort, protocol, hostIp };
  });
}

function volumes(input: Partial<VolumeSpec>[]): VolumeSpec[] {
  const targets = new Set<string>();
  return input.map((v, i) => {
    const f = `volumes[${i}]`;
    const name = v.name ?? "";
    if (!VOLUME_NAME_RE.test(name)) throw bad(`${f}.name`, `"${name}" is not a volume name: 1-63 of a-z 0-9 _ . -, starting with a letter or digit`);
    const target = containerPath(`${f}.containerPath`, v.containerPath ?? "");
    if (targets.has(target)) throw bad(`${f}.containerPath`, `${target} is mounted twice`);
    targets.add(target);
    return { name, containerPath: target, readOnly: Boolean(v.readOnly) };
  });
}

function stringMap(field: string, m: Record<string, string>, key: (k: string) => string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(m)) {
    const why = key(k);
    if (why) throw bad(`${field}.${k.slice(0, 64)}`, why);
    if (typeof v !== "string" || hasNul(v)) throw bad(`${field}.${k}`, "values are strings without NUL bytes");
    if (v.length > 32768) throw bad(`${field}.${k}`, `${v.length} characters; at most 32768`);
    out[k] = v;
  }
  return out;
}

/** A named volume the model lives in: model_path NAME:/path mounts it read-only at /path. */
export function modelMount(spec: Pick<ContainerSpec, "modelPath">): VolumeSpec | undefined {
  const m = /^([^/:]+):(\/.*)$/.exec(spec.modelPath);
  return m ? { name: m[1]!, containerPath: m[2]!, readOnly: true } : undefined;
}

/** Every volume the container mounts: its own and the model's. */
export function volumesOf(spec: ContainerSpec): VolumeSpec[] {
  const m = modelMount(spec);
  return m ? [...spec.volumes, m] : spec.volumes;
}

/** The environment the process sees: the request's, and the model's for inference containers. */
export function envOf(spec: ContainerSpec): Record<string, string> {
  const env = { ...spec.env };
  if (spec.modelId) env[MODEL_ENV.id] = spec.modelId;
  if (spec.modelPath) env[MODEL_ENV.path] = modelMount(spec)?.containerPath ?? spec.modelPath;
  return env;
}

/** Reads a registry kind off a reference when the request names none. */
function registryOf(image: string): string {
  const first = image.split("/")[0]!;
  if (!image.includes("/") || !(/[.:]/.test(first) || first === "localhost")) return "";
  return first === "ghcr.io" ? "ghcr" : first === "docker.io" ? "docker-hub" : "private";
}

export function validateContainerSpec(input: ContainerSpecInput, defaults: HealthDefaults = HEALTH_DEFAULTS): ContainerSpec {
  const name = input.name ?? "";
  if (!CONTAINER_NAME_RE.test(name)) throw bad("name", `"${name}" is not a container name: 1-63 of a-z 0-9 -, starting with a letter or digit`);
  const kind = (input.kind || "app") as ContainerKind;
  if (!KINDS.includes(kind)) throw bad("kind", `"${input.kind}": use app or inference`);
  const image = input.image ?? "";
  if (!image) throw bad("image", "missing: give an imported image's name[:tag] (thoc-node ct image list) or a registry reference");
  if (!IMAGE_RE.test(image)) throw bad("image", `"${image.slice(0, 80)}" is not an image reference (name[:tag], registry/path:tag)`);
  const registry = input.registry || registryOf(image);
  if (registry && !REGISTRIES.includes(registry)) throw bad("registry", `"${input.registry}": use docker-hub, ghcr or private (or leave it empty)`);
  const user = input.registryAuth?.username ?? input.registryUser ?? "";
  if (input.registryAuth?.password && !user) throw bad("registryAuth.username", "a registry password needs a username");

  const env = stringMap("env", input.env ?? {}, (k) => (ENV_KEY_RE.test(k) ? undefined : "not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"));
  const command = input.command ?? [];
  if (command.some((a) => typeof a !== "string" || hasNul(a))) throw bad("command", "arguments are strings without NUL bytes");
  const labels = stringMap("labels", input.labels ?? {}, (k) => (k.startsWith("thoc.") ? "thoc.* labels are the agent's own" : LABEL_KEY_RE.test(k) ? undefined : "not a label key ([A-Za-z0-9][A-Za-z0-9._/-]{0,127})"));

  const cpus = input.cpus ?? 0;
  if (!Number.isFinite(cpus) || cpus < 0 || cpus > 1024) throw bad("cpus", `${cpus}: use 0 (no limit) or a number of CPUs such as 0.5 or 2`);
  const memoryMB = input.memoryMB ?? 0;
  if (!Number.isInteger(memoryMB) || memoryMB < 0 || (memoryMB > 0 && memoryMB < MIN_MEMORY_MB)) throw bad("memoryMB", `${memoryMB}: use 0 (no limit) or at least ${MIN_MEMORY_MB} MiB`);
  const gpuDeviceIds = input.gpuDeviceIds ?? [];
  for (const [i, g] of gpuDeviceIds.entries()) {
    if (!g || !/^[A-Za-z0-9:._-]{1,64}$/.test(g)) throw bad(`gpuDeviceIds[${i}]`, `"${g}" is not a GPU id (GPU-0 or a PCI address; thoc-node vm gpus)`);
    if (gpuDeviceIds.indexOf(g) !== i) throw bad(`gpuDeviceIds[${i}]`, `${g} is asked for twice`);
  }

  const ps = ports(input.ports ?? []);
  const vs = volumes(input.volumes ?? []);

  const healthCheckPath = input.healthCheckPath ?? "";
  if (healthCheckPath) {
    if (!healthCheckPath.startsWith("/") || /\s/.test(healthCheckPath) || healthCheckPath.length > 1024) throw bad("healthCheckPath", `"${healthCheckPath.slice(0, 80)}": give an HTTP path such as /healthz`);
    if (!ps.some((p) => p.protocol === "tcp")) throw bad("healthCheckPath", "the health check is an HTTP GET on the first mapped TCP port: map one (--port 8080:80)");
  }
  const healthIntervalS = input.healthIntervalS || defaults.intervalS;
  if (!Number.isInteger(healthIntervalS) || healthIntervalS < 1 || healthIntervalS > 3600) throw bad("healthIntervalS", `${healthIntervalS}: use 1-3600 seconds`);
  const healthRetries = input.healthRetries || defaults.retries;
  if (!Number.isInteger(healthRetries) || healthRetries < 1 || healthRetries > 100) throw bad("healthRetries", `${healthRetries}: use 1-100`);
  const restartPolicy = (input.restartPolicy || "on-failure") as RestartPolicy;
  if (!POLICIES.includes(restartPolicy)) throw bad("restartPolicy", `"${input.restartPolicy}": use no, on-failure or always`);

  const modelId = input.modelId ?? "", modelPath = input.modelPath ?? "";
  if ((modelId || modelPath) && kind !== "inference") throw bad(modelId ? "modelId" : "modelPath", "only inference containers take a model (--kind inference)");
  if (modelId && (hasNul(modelId) || modelId.length > 512)) throw bad("modelId", "at most 512 characters, no NUL");
  if (modelPath) {
    const m = modelMount({ modelPath });
    if (m) {
      if (!VOLUME_NAME_RE.test(m.name)) throw bad("modelPath", `"${m.name}" is not a volume name (model_path VOLUME:/path mounts a named volume read-only)`);
      containerPath("modelPath", m.containerPath);
      if (vs.some((v) => v.containerPath === path.normalize(m.containerPath).replace(/\/$/, ""))) throw bad("modelPath", `${m.containerPath} is also a volume's mount point`);
    } else containerPath("modelPath", modelPath);
  }
  for (const [k, given] of [[MODEL_ENV.id, modelId], [MODEL_ENV.path, modelPath]] as const) {
    if (given && k in env) throw bad(`env.${k}`, `set by the agent from ${k === MODEL_ENV.id ? "modelId" : "modelPath"}: drop it from env`);
  }

  return {
    name, kind, image, registry, registryUser: user, ports: ps, volumes: vs, env, command, cpus, memoryMB, gpuDeviceIds,
    healthCheckPath, healthIntervalS, healthRetries, restartPolicy, modelId, modelPath, labels,
  };
}

/** The protobuf spec as loose input (validateContainerSpec checks it). */
export function specFromPb(s: PbContainerSpec | undefined): ContainerSpecInput {
  if (!s) throw new ThocError("invalid_argument", "spec: missing: give the container's name and image");
  return {
    name: s.name, kind: s.kind, image: s.image, registry: s.registry,
    registryAuth: s.registryAuth && (s.registryAuth.username || s.registryAuth.password) ? { username: s.registryAuth.username, password: s.registryAuth.password } : undefined,
    ports: s.ports.map((p) => ({ containerPort: p.containerPort, hostPort: p.hostPort, protocol: (p.protocol || "tcp") as PortSpec["protocol"], hostIp: p.hostIp })),
    volumes: s.volumes.map((v) => ({ name: v.name, containerPath: v.containerPath, readOnly: v.readOnly })),
    env: { ...s.env }, command: [...s.command], cpus: s.cpus, memoryMB: s.memoryMb, gpuDeviceIds: [...s.gpuDeviceIds],
    healthCheckPath: s.healthCheckPath, healthIntervalS: s.healthIntervalS, healthRetries: s.healthRetries, restartPolicy: s.restartPolicy,
    modelId: s.modelId, modelPath: s.modelPath, labels: { ...s.labels },
  };
}

/** A CreateContainerRequest's options for ContainerManager.create (the registry password goes here, never into the spec). */
export function createOptionsFromPb(req: Pick<CreateContainerRequest, "noStart" | "group" | "requestId" | "spec">): CreateOptions {
  return {
    noStart: req.noStart,
    ...(req.group ? { group: req.group } : {}),
    ...(req.requestId ? { requestId: req.requestId } : {}),
    ...(req.spec?.registryAuth?.password ? { registryPassword: req.spec.registryAuth.password } : {}),
  };
}
