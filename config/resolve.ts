import { existsSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import { ThocError } from "../errors/index.js";
import { schema, type Schema } from "./schema.js";
import { isOpt, presetDefault, type Opt, type OptTree, type Preset, type Resolve } from "./types.js";

export type Config = Resolve<Schema> & {
  /** True for `agent --dev`: plaintext, dev cluster key, test hypervisor, generated S3 keys. */
  readonly dev: boolean;
  /** Where each value came from (path -> "flag" | "env" | "file" | "default"), for `status` and docs. */
  readonly sources: Readonly<Record<string, string>>;
  /** The config file actually read, if any. */
  readonly configFile: string | undefined;
};

/**
 * The well-known key every --dev agent shares, so dev agents find each other
 * with no setup. It protects nothing, which is why outside --dev the agent
 * refuses to start without a real key.
 */
export const DEV_CLUSTER_KEY = "dGhvYy1kZXYta2V5LW5vdC1hLXNlY3JldC0wMDAwMDA=";

export const DEFAULT_CONFIG_FILE = "/etc/thoc/node.yaml";

export interface LoadOptions {
  /** --config; when undefined, /etc/thoc/node.yaml is read if it exists; null reads no file. */
  file?: string | null;
  env?: NodeJS.ProcessEnv;
  /** Flag values keyed by flag name ("--grpc-port"); undefined means unset. */
  flags?: Record<string, unknown>;
  dev?: boolean;
  /** Working directory for --dev's ./.thoc (tests pass their temp dir). */
  cwd?: string;
}

/** A config problem: names the key and what was expected. Exit code 2. */
export function configError(key: string, message: string): ThocError {
  return new ThocError("invalid_argument", `config: ${key}: ${message}`, { key });
}

function walk(tree: OptTree, prefix: string[], fn: (p: string[], o: Opt<unknown>) => void): void {
  for (const [k, v] of Object.entries(tree)) {
    if (isOpt(v)) fn([...prefix, k], v);
    else walk(v as OptTree, [...prefix, k], fn);
  }
}

export function envName(p: string[], o: Opt<unknown>): string {
  if (o.env) return o.env;
  return "THOC_" + p.map((s) => s.replace(/([a-z0-9])([A-Z])/g, "$1_$2")).join("_").toUpperCase();
}

/** Every option with its path, for docs and dumps. */
export function listOptions(): { path: string; opt: Opt<unknown>; env: string }[] {
  const out: { path: string; opt: Opt<unknown>; env: string }[] = [];
  walk(schema, [], (p, o) => out.push({ path: p.join("."), opt: o, env: envName(p, o) }));
  return out;
}

function checkUnknown(file: unknown, tree: OptTree, prefix: string): void {
  if (file === null || file === undefined) return;
  if (typeof file !== "object" || Array.isArray(file)) {
    throw configError(prefix || "(top level)", "expected a map of keys");
  }
  for (const [k, v] of Object.entries(file)) {
    const key = prefix ? `${prefix}.${k}` : k;
    const node = (tree as Record<string, unknown>)[k];
    if (node === undefined) throw configError(key, "unknown key (see docs/configuration.md for the valid ones)");
    if (!isOpt(node)) checkUnknown(v, node as OptTree, key);
  }
}

function getPath(obj: unknown, p: string[]): unknown {
  let cur = obj;
  for (const k of p) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}

function setPath(obj: Record<string, unknown>, p: string[], v: unknown): void {
  let cur = obj;
  for (const k of p.slice(0, -1)) cur = (cur[k] ??= {}) as Record<string, unknown>;
  cur[p[p.length - 1]!] = v;
}

function readFile(file: string | undefined | null): { data: unknown; used: string | undefined } {
  if (file === null) return { data: undefined, used: undefined };
  const f = file ?? DEFAULT_CONFIG_FILE;
  let text: string;
  try {
    text = readFileSync(f, "utf8");
  } catch (err) {
    if (!file && (err as NodeJS.ErrnoException).code === "ENOENT") return { data: undefined, used: undefined };
    throw configError("--config", `cannot read ${f}: ${(err as Error).message}`);
  }
  try {
    return { data: parseYaml(text), used: f };
  } catch (err) {
    throw configError("--config", `${f} is not valid YAML: ${(err as Error).message.split("\n")[0]}`);
  }
}

function firstLanIPv4(): string {
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return "127.0.0.1";
}

export function isLoopback(addr: string): boolean {
  return addr.startsWith("127.") || addr === "::1" || addr === "localhost";
}

/** host:port, with brackets around an IPv6 host: the one way every address of the agent is written. */
export function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Builds the agent's config: preset defaults < file < THOC_* env < flags, then
 * --dev defaults for anything left unset, then cross-field checks. Throws a
 * ThocError naming the offending key; nothing is bound before this returns.
 */
export function loadConfig(opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env;
  const flags = opts.flags ?? {};
  const dev = opts.dev ?? false;
  const { data: file, used } = readFile(opts.file);
  checkUnknown(file, schema, "");

  const sources: Record<string, string> = {};
  const out: Record<string, unknown> = {};
  const explicit = new Set<string>();

  // Preset first: it decides the defaults of everything else.
  let preset: Preset = dev ? "local" : "lan";
  const order: [string, (p: string[], o: Opt<unknown>) => unknown][] = [
    ["flag", (_p, o) => (o.flag ? flags[o.flag] : undefined)],
    ["env", (p, o) => env[envName(p, o)]],
    ["file", (p) => getPath(file, p)],
  ];
  const pick = (p: string[], o: Opt<unknown>): { v: unknown; src: string } | undefined => {
    for (const [src, get] of order) {
      const raw = get(p, o);
      // An empty variable counts as unset (shells export them); an empty flag was typed on purpose and is checked like any value.
      if (raw === undefined || raw === null || (src === "env" && raw === "")) continue;
      const v = o.parse(raw);
      if (v === undefined) {
        const shown = o.secret ? "<redacted>" : JSON.stringify(raw);
        const where = src === "flag" ? o.flag! : src === "env" ? envName(p, o) : p.join(".");
        throw configError(where, `expected ${o.expected}, got ${shown}`);
      }
      return { v, src };
    }
    return undefined;
  };
  const pp = pick(["preset"], schema.preset);
  if (pp) preset = pp.v as Preset;

  walk(schema, [], (p, o) => {
    const key = p.join(".");
    const got = pick(p, o);
    if (got) {
      explicit.add(key);
      sources[key] = got.src;
      setPath(out, p, got.v);
    } else {
      sources[key] = "default";
      setPath(out, p, presetDefault(o, preset));
    }
  });

  // The preset option itself has no `local` default, so the walk wrote "lan" under a plain --dev
  // while the local timers applied: it reports the preset actually in effect.
  out.preset = preset;

  // Derived defaults.
  if (dev) {
    if (!explicit.has("bind")) out.bind = "127.0.0.1";
    if (!explicit.has("hypervisorUri")) out.hypervisorUri = "test:///default";
    const cluster = out.cluster as { keys: string[] };
    if (!explicit.has("cluster.keys")) cluster.keys = [DEV_CLUSTER_KEY];
    if (!explicit.has("localSocket")) out.localSocket = "";
  }
  if (!out.name) {
    const bind = out.bind as string;
    out.name = dev
      ? bind === "127.0.0.1" || bind === "0.0.0.0" ? "dev" : `dev-${bind.replace(/[.:]/g, "-")}`
      : os.hostname().split(".")[0]!.replace(/[^a-zA-Z0-9_.-]/g, "-");
  }
  if (dev && !explicit.has("dataDir")) out.dataDir = path.resolve(opts.cwd ?? process.cwd(), ".thoc", out.name as string);
  out.dataDir = path.resolve(opts.cwd ?? process.cwd(), out.dataDir as string);
  if (!out.advertise) out.advertise = out.bind === "0.0.0.0" ? firstLanIPv4() : out.bind === "::" ? "::1" : out.bind;
  out.join = (out.join as string[]).map((j) => (/:\d+$/.test(j) ? j : `${j}:7946`));

  const cfg = { ...(out as Resolve<Schema>), dev, sources, configFile: used } as Config;
  validate(cfg);
  return cfg;
}

function validate(c: Config): void {
  const os_ = c.objectstore;
  if (os_.writeQuorum > os_.replicas) throw configError("objectstore.writeQuorum", `must be at most objectstore.replicas (${os_.replicas})`);
  if (os_.readQuorum > os_.replicas) throw configError("objectstore.readQuorum", `must be at most objectstore.replicas (${os_.replicas})`);
  if (os_.readQuorum + os_.writeQuorum <= os_.replicas) {
    throw configError("objectstore.readQuorum", `readQuorum + writeQuorum must exceed replicas (${os_.readQuorum} + ${os_.writeQuorum} <= ${os_.replicas}), or reads could miss acknowledged writes`);
  }
  if (c.gossip.probeTimeout >= c.gossip.probeInterval) throw configError("gossip.probeTimeout", `must be below gossip.probeInterval (${c.gossip.probeInterval}ms)`);
  if (c.scheduler.voters % 2 === 0) throw configError("scheduler.voters", `must be odd (1, 3, 5...): ${c.scheduler.voters} voters tolerate no more failures than ${c.scheduler.voters - 1} and need a larger majority`);
  if (c.scheduler.heartbeatInterval >= c.scheduler.electionTimeout) throw configError("scheduler.heartbeatInterval", "must be below scheduler.electionTimeout");
  if (c.scheduler.leaseDuration * 1.1 >= c.scheduler.electionTimeout) throw configError("scheduler.leaseDuration", "must be below scheduler.electionTimeout / 1.1, so an old leader's lease ends (with a margin for clock rates) before a new one can be elected");
  if (!c.dev && c.cluster.keys.length === 0) throw configError("cluster.keys", "a cluster key is required outside --dev: run `thoc-node keygen` and put the key in cluster.keys or THOC_CLUSTER_KEYS");
  if (Boolean(c.tls.certFile) !== Boolean(c.tls.keyFile)) throw configError(c.tls.certFile ? "tls.keyFile" : "tls.certFile", "tls.certFile and tls.keyFile must be set together");
  if (c.pki.joinToken && c.join.length === 0 && !c.pki.joinAddress) throw configError("pki.joinToken", "a join token needs a member to join: give --join HOST (or pki.joinAddress)");
  // A cluster PKI in the data dir (cluster init, or a join that is about to make one) gives the gRPC API its TLS.
  const clusterPki = existsSync(path.join(c.dataDir, "pki", "ca.crt")) || Boolean(c.pki.joinToken);
  // Without a CA the agent cannot verify client certificates: operators and peers would all be anonymous, and refused.
  if (!c.dev && c.tls.certFile && !c.tls.caFile) throw configError("tls.caFile", "tls.certFile needs tls.caFile: the CA that issued operator and node certificates, which the agent verifies callers against");
  if (!c.dev && !c.tls.certFile && !clusterPki && !isLoopback(c.bind)) {
    throw configError("tls.certFile", `the gRPC API on ${c.bind} needs TLS: run \`thoc-node cluster init\` (or join with --token), set tls.certFile and tls.keyFile, bind to loopback, or use --dev`);
  }
  if (Boolean(c.s3.tls.certFile) !== Boolean(c.s3.tls.keyFile)) throw configError(c.s3.tls.certFile ? "s3.tls.keyFile" : "s3.tls.certFile", "s3.tls.certFile and s3.tls.keyFile must be set together");
  if (c.s3.secretKey && !c.s3.accessKey) throw configError("s3.accessKey", "s3.secretKey is set but s3.accessKey is empty");
  if (c.s3.accessKey && !c.s3.secretKey) throw configError("s3.secretKey", "s3.accessKey is set but s3.secretKey is empty");
  // Every listener of the agent on one address: two on one port would fail at bind with a misleading "in use" (exit 3).
  const ports: [string, number][] = [["grpcPort", c.grpcPort], ["httpPort", c.httpPort], ["s3Port", c.s3Port], ["gossipPort", c.gossipPort], ["vm.vncPort", c.vm.vncPort]];
  for (let i = 0; i < ports.length; i++) {
    for (let j = i + 1; j < ports.length; j++) {
      const [k, v] = ports[i]!, [k2, v2] = ports[j]!;
      if (v !== 0 && v === v2) throw configError(k2, `port ${v2} is also set for ${k}: every listener needs a port of its own`);
    }
  }
  if (c.dev && !isLoopback(c.bind)) {
    throw configError("bind", `--dev serves plaintext gRPC with the well-known dev cluster key, so it binds only loopback (127.0.0.0/8 or ::1), not ${c.bind}: drop --bind, or run without --dev with cluster.keys and TLS`);
  }
  const pseudo = PSEUDO_FS.find((p) => c.dataDir === p || c.dataDir.startsWith(`${p}/`));
  if (pseudo) throw configError("dataDir", `${c.dataDir} is under ${pseudo}, a kernel pseudo-filesystem that cannot hold files: choose a directory on a disk, e.g. /var/lib/thoc`);
}

/** Kernel filesystems a data dir can never live on (Node's recursive mkdir loops forever under /proc). */
const PSEUDO_FS = ["/proc", "/sys", "/dev"];

/** The config with secrets replaced, for logs and `status`. */
export function redacted(c: Config): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  walk(schema, [], (p, o) => {
    const v = getPath(c, p);
    const empty = v === "" || (Array.isArray(v) && v.length === 0);
    setPath(out, p, o.secret && !empty ? "<redacted>" : v);
  });
  return out;
}
