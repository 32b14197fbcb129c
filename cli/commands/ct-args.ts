/**
 * `ct create`'s flags turned into a ContainerSpec, checked before any call:
 * a malformed --port, --env, --volume or --label is one clear line naming
 * the flag and the form it takes (exit 2), and nothing reaches the agent.
 * The node validates again (container/spec.ts): this is for the operator's
 * sake, not the cluster's.
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { ThocError } from "../../errors/index.js";

export function invalid(msg: string): never {
  throw new ThocError("invalid_argument", msg);
}

export const NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
const VOLUME_RE = /^[a-z0-9][a-z0-9_.-]{0,62}$/;
const ENV_KEY_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const LABEL_KEY_RE = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$/;

export interface PortArg { containerPort: number; hostPort: number; protocol: "tcp" | "udp"; hostIp: string }
export interface VolumeArg { name: string; containerPath: string; readOnly: boolean }

const PORT_FORM = "use [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp] or CONTAINER_PORT (the engine picks the host port), e.g. 8080:80, 127.0.0.1:8080:80, 5353:53/udp";

/** One --port: 80, 8080:80, 8080:80/udp, 127.0.0.1:8080:80, [::1]:8080:80. */
export function parsePort(s: string): PortArg {
  const slash = s.lastIndexOf("/");
  const proto = slash >= 0 ? s.slice(slash + 1) : "tcp";
  const main = slash >= 0 ? s.slice(0, slash) : s;
  if (proto !== "tcp" && proto !== "udp") invalid(`--port ${s}: protocol "${proto}": use tcp or udp`);
  const v6 = /^\[([^\]]*)\]:([^:]*):([^:]*)$/.exec(main);
  const parts = v6 ? v6.slice(1) : main.split(":");
  if (parts.length > 3 || parts.some((x) => x === "")) invalid(`--port ${s}: ${PORT_FORM}`);
  const [ctr, host, hostIp = ""] = [...parts].reverse() as [string, string | undefined, string | undefined];
  if (hostIp && !isIP(hostIp)) invalid(`--port ${s}: "${hostIp}" is not an IP address (${PORT_FORM})`);
  const num = (v: string, what: string) => {
    if (!/^\d{1,5}$/.test(v)) invalid(`--port ${s}: ${what} "${v}" is not a number (${PORT_FORM})`);
    const n = Number(v);
    if (n < 1 || n > 65535) invalid(`--port ${s}: ${what} ${v} is not in 1-65535`);
    return n;
  };
  return { containerPort: num(ctr, "container port"), hostPort: host === undefined ? 0 : num(host, "host port"), protocol: proto, hostIp };
}

export function parsePorts(list: string[]): PortArg[] {
  const done: { p: PortArg; s: string }[] = [];
  for (const s of list) {
    const p = parsePort(s);
    // As the kernel sees it: one address's port clashes with the same port on that address or on all of them.
    const clash = p.hostPort ? done.find((d) => d.p.hostPort === p.hostPort && d.p.protocol === p.protocol && (!d.p.hostIp || !p.hostIp || d.p.hostIp === p.hostIp)) : undefined;
    if (clash) invalid(`--port ${s}: host port ${p.hostPort}/${p.protocol} is already mapped by --port ${clash.s}`);
    done.push({ p, s });
  }
  return done.map((d) => d.p);
}

/** --env KEY=VALUE (the value may hold '=' and be empty). */
export function parseEnv(list: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const s of list) {
    const i = s.indexOf("=");
    if (i < 0) invalid(`--env ${s}: use KEY=VALUE (KEY=  for an empty value)`);
    const k = s.slice(0, i);
    if (!ENV_KEY_RE.test(k)) invalid(`--env ${s}: the key "${k}" must be letters, digits and '_', not starting with a digit`);
    if (Object.hasOwn(env, k)) invalid(`--env ${k} is given twice`);
    env[k] = s.slice(i + 1);
  }
  return env;
}

/** A path inside the container: absolute, no "." or ".." segment. */
export function checkContainerPath(p: string, flag: string, whole: string): string {
  if (!p.startsWith("/")) invalid(`${flag} ${whole}: the container path "${p}" must be absolute (start with /)`);
  if (p.split("/").some((seg) => seg === ".." || seg === ".")) invalid(`${flag} ${whole}: the container path "${p}" must not contain "." or ".." segments`);
  if (p === "/" || /\0/.test(p)) invalid(`${flag} ${whole}: "${p}" cannot be mounted over`);
  return p.length > 1 ? p.replace(/\/+$/, "") : p;
}

/** --volume NAME:/path[:ro|rw]; NAME is a volume kept on the node, not a host path. */
export function parseVolume(s: string): VolumeArg {
  const parts = s.split(":");
  if (parts.length < 2 || parts.length > 3) invalid(`--volume ${s}: use NAME:/container/path[:ro]`);
  const [name, cpath, mode] = parts as [string, string, string | undefined];
  if (name.startsWith("/") || name.startsWith(".")) invalid(`--volume ${s}: "${name}" is a host path; a volume is a NAME kept on the node (<dataDir>/volumes/NAME): use NAME:/container/path[:ro]`);
  if (!VOLUME_RE.test(name)) invalid(`--volume ${s}: the volume name "${name}" must be 1-63 lower-case letters, digits, '_', '.' and '-', starting with a letter or digit`);
  if (mode !== undefined && mode !== "ro" && mode !== "rw") invalid(`--volume ${s}: the mode "${mode}" must be ro or rw`);
  return { name, containerPath: checkContainerPath(cpath, "--volume", s), readOnly: mode === "ro" };
}

export function parseVolumes(list: string[]): VolumeArg[] {
  const at = new Map<string, string>();
  return list.map((s) => {
    const v = parseVolume(s);
    const other = at.get(v.containerPath);
    if (other) invalid(`--volume ${s}: ${v.containerPath} is already mounted by --volume ${other}`);
    at.set(v.containerPath, s);
    return v;
  });
}

/** --label KEY=VALUE; thoc.* keys are the agent's own. */
export function parseLabels(list: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const s of list) {
    const i = s.indexOf("=");
    const k = i < 0 ? s : s.slice(0, i);
    if (i < 0 || !LABEL_KEY_RE.test(k)) invalid(`--label ${s}: use KEY=VALUE, KEY of letters, digits, '.', '_', '/' and '-'`);
    if (k.startsWith("thoc.")) invalid(`--label ${s}: thoc.* labels are reserved for the agent`);
    out[k] = s.slice(i + 1);
  }
  return out;
}

/** A whole number within [min, max]; undefined stays undefined (the default applies). */
export function whole(v: string | undefined, flag: string, min = 0, max = 2 ** 32 - 1): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) invalid(`${flag} ${v}: give a whole number${min > 0 ? ` from ${min}` : ""}${max < 2 ** 32 - 1 ? ` to ${max}` : ""}`);
  return Number(v);
}

export function parseCpus(v: string | undefined): number {
  if (v === undefined) return 0;
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(v) || !Number.isFinite(Number(v))) invalid(`--cpus ${v}: give a number of CPUs such as 0.5 or 2 (0: no limit)`);
  return Number(v);
}

function readSecret(file: string): string {
  let text: string;
  try { text = readFileSync(file === "-" ? 0 : file, "utf8"); } catch (err) { invalid(`--registry-password-file ${file}: cannot read it: ${(err as Error).message}`); }
  const pw = text.replace(/\r?\n$/, "");
  if (!pw) invalid(`--registry-password-file ${file}: the file is empty`);
  return pw;
}

export interface CreateFlags {
  image?: string; port?: string[]; env?: string[]; volume?: string[]; gpu?: string[]; label?: string[];
  health?: string; healthInterval?: string; healthRetries?: string; modelId?: string; modelPath?: string; kind?: string;
  cpus?: string; memory?: string; restart?: string; node?: string; group?: string; start?: boolean;
  registryUser?: string; registryPasswordFile?: string; json?: boolean;
}

/** The CreateContainerRequest's spec from the flags and the command after `--`; throws invalid_argument on the first bad flag. */
export function buildContainerSpec(name: string, o: CreateFlags, command: string[]) {
  if (!NAME_RE.test(name)) invalid(`container name "${name}": use 1-63 lower-case letters, digits and '-', starting with a letter or digit`);
  if (!o.image) invalid("--image is required: an imported image (thoc-node ct image list) or a registry reference such as docker.io/library/nginx:1.27");
  if (o.group !== undefined && !NAME_RE.test(o.group)) invalid(`--group ${o.group}: use 1-63 lower-case letters, digits and '-', starting with a letter or digit`);
  const model = o.modelId !== undefined || o.modelPath !== undefined;
  if (model && o.kind === "app") invalid("--model-id and --model-path are for --kind inference");
  const kind = o.kind ?? (model ? "inference" : "app");
  if (o.modelPath !== undefined) checkContainerPath(o.modelPath, "--model-path", o.modelPath);
  if (o.health !== undefined && !/^\/[\x21-\x7e]*$/.test(o.health)) invalid(`--health ${o.health}: give an HTTP path such as /healthz (polled on the first mapped port)`);
  const ports = parsePorts(o.port ?? []);
  if (o.health !== undefined && !ports.length) invalid(`--health ${o.health}: the check is an HTTP GET on the first mapped port; add a --port`);
  if (Boolean(o.registryUser) !== Boolean(o.registryPasswordFile)) invalid("--registry-user and --registry-password-file go together");
  const gpus = (o.gpu ?? []).map((g) => g.trim());
  for (const [i, g] of gpus.entries()) {
    if (!g) invalid("--gpu: give a device id from the node's inventory (thoc-node vm gpus), e.g. GPU-0 or 0000:65:00.0");
    if (gpus.indexOf(g) !== i) invalid(`--gpu ${g} is given twice`);
  }
  return {
    name, kind, image: o.image,
    registryAuth: o.registryUser ? { username: o.registryUser, password: readSecret(o.registryPasswordFile!) } : undefined,
    ports, volumes: parseVolumes(o.volume ?? []), env: parseEnv(o.env ?? []), command, labels: parseLabels(o.label ?? []),
    cpus: parseCpus(o.cpus), memoryMb: whole(o.memory, "--memory") ?? 0, gpuDeviceIds: gpus,
    healthCheckPath: o.health ?? "", healthIntervalS: whole(o.healthInterval, "--health-interval", 1, 86_400) ?? 0, healthRetries: whole(o.healthRetries, "--health-retries", 1, 1000) ?? 0,
    restartPolicy: o.restart ?? "", modelId: o.modelId ?? "", modelPath: o.modelPath ?? "",
  };
}
