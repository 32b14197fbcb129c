/**
 * Starts N real agent processes (bin/thoc-node.js agent) on distinct loopback
 * addresses with their own data dirs, waits for /readyz, and kills (SIGTERM or
 * SIGKILL) and restarts any of them. Membership, object-store and scheduler
 * tests build on it.
 *
 * Each test process gets its own 127.X.Y.0/24 block (X, Y from the pid), so test
 * files running in parallel never collide on the default ports.
 *
 * Two modes (AgentOptions.dev; THOC_TEST_MODE=prod switches the default):
 *  - dev: `agent --dev` with flags and THOC_* env, the dev cluster key;
 *  - prod: as packaging/install.sh sets a node up — a data dir made 0750, a
 *    YAML config file (like /etc/thoc/node.yaml) with a cluster key of its own
 *    and the S3 root key, no --dev and no generated S3 key — and bootstrapped
 *    as docs/operations.md says: the first agent's data dir gets `cluster
 *    init`, every other agent joins with a one-time token from it (`cluster
 *    token create`, `agent --join ... --token ...`), so gRPC is mutual TLS on
 *    loopback too; the harness's clients (cli(), clientAddress) use the agent's
 *    local socket, <dataDir>/thoc.sock, as root: admin, as the CLI on a node
 *    is; grpcCredentials() is the admin certificate `cluster init` wrote, for
 *    a client that must come over TCP. A test that brings its own tls.* files (env
 *    THOC_TLS_CERT_FILE) gets no cluster PKI. libvirt's test driver.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { DEV_CLUSTER_KEY } from "../config/index.js";
import { credentials, type ChannelCredentials } from "../rpc/index.js";

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const CLI = path.join(REPO_ROOT, "bin", "thoc-node.js");

let blockCounter = 0;
/** A fresh /24 of loopback addresses for this process: 127.X.Y.1 ... 127.X.Y.254. */
export function loopbackBlock(): string {
  const n = (process.pid * 7 + blockCounter++) % (200 * 250);
  return `127.${20 + Math.floor(n / 250)}.${n % 250}`;
}

/** The harness's default mode: THOC_TEST_MODE=prod runs every agent that does not choose as production does. */
export const TEST_MODE: "dev" | "prod" = process.env.THOC_TEST_MODE === "prod" ? "prod" : "dev";

/** A fresh cluster key, as `thoc-node keygen` prints one. */
export const newClusterKey = () => randomBytes(32).toString("base64");

/** THOC_* variables a prod-mode agent gets from its config file instead (the S3 root key is config, as on a real node). */
const FILE_ENV: Record<string, string[]> = { THOC_S3_ACCESS_KEY: ["s3", "accessKey"], THOC_S3_SECRET_KEY: ["s3", "secretKey"] };

export interface AgentOptions {
  /** Extra CLI flags for `agent`. */
  args?: string[];
  env?: Record<string, string>;
  /** --dev (dev cluster key, generated S3 root key) or production mode (see the top of this file); default from THOC_TEST_MODE. */
  dev?: boolean;
  /** Production mode's cluster key (default: a new one per Cluster, or per lone agent). */
  clusterKey?: string;
  /** Command prefix the agent runs under, e.g. ["ip", "netns", "exec", ns] (it must exec, not fork). */
  wrap?: string[];
  /**
   * Production mode's cluster PKI: "init" runs `cluster init` on this data dir before the first start,
   * { tokenFrom } joins with a token from that (running) agent; false: none. Default: "init" in
   * production mode unless the test brings its own tls.* files.
   */
  pki?: "init" | { tokenFrom: AgentProcess } | false;
  /** cli() dials the gRPC port (with THOC_TLS_* from the environment) even in production mode, instead of the local socket. */
  cliOverTcp?: boolean;
  /** Production mode: top-level keys of the config file that replace the harness's (e.g. hypervisorUri, vm). */
  config?: Record<string, unknown>;
}

/** The files a CLI or gRPC client needs to call a cluster-PKI agent as admin. */
export interface ClientTls { ca: string; cert: string; key: string }

export class AgentProcess {
  proc?: ChildProcess;
  /** Everything the process wrote, stdout and stderr interleaved. */
  output = "";
  exitCode: number | null = null;
  exitSignal: NodeJS.Signals | null = null;
  private exited?: Promise<void>;
  readonly dev: boolean;
  /** The key the agent's peers sign with (the dev key in dev mode): what a test signs replica calls with. */
  readonly clusterKey: string;

  constructor(
    readonly name: string,
    readonly bind: string,
    readonly dataDir: string,
    private readonly opts: AgentOptions & { join?: string[] },
  ) {
    this.dev = opts.dev ?? TEST_MODE === "dev";
    this.clusterKey = this.dev ? DEV_CLUSTER_KEY : opts.clusterKey ?? newClusterKey();
    this.pki = this.dev || opts.env?.THOC_TLS_CERT_FILE ? false : opts.pki ?? "init";
  }

  readonly pki: "init" | { tokenFrom: AgentProcess } | false;

  /** The admin credentials clients use with a cluster-PKI agent (the first agent's `cluster init` wrote them). */
  get clientTls(): ClientTls | undefined {
    if (!this.pki) return undefined;
    const home = this.pki === "init" ? this.dataDir : this.pki.tokenFrom.dataDir;
    return { ca: path.join(home, "pki", "ca.crt"), cert: path.join(home, "pki", "admin.crt"), key: path.join(home, "pki", "admin.key") };
  }

  /** Environment for the CLI to call this agent as admin (empty without a cluster PKI). */
  get cliEnv(): Record<string, string> {
    const t = this.clientTls;
    return t ? { THOC_TLS_CA: t.ca, THOC_TLS_CERT: t.cert, THOC_TLS_KEY: t.key } : {};
  }

  /** Channel credentials for a test's own gRPC client: mutual TLS as admin with a cluster PKI, else plaintext. */
  grpcCredentials(): ChannelCredentials {
    const t = this.clientTls;
    return t ? credentials.createSsl(readFileSync(t.ca), readFileSync(t.key), readFileSync(t.cert)) : credentials.createInsecure();
  }

  /** Before a start: `cluster init` on a fresh data dir, or a join token when this node has no certificate yet. */
  private async bootstrapArgs(): Promise<string[]> {
    if (!this.pki) return [];
    const pkiDir = path.join(this.dataDir, "pki");
    if (this.pki === "init") {
      if (!existsSync(path.join(pkiDir, "ca.crt"))) {
        mkdirSync(this.dataDir, { recursive: true, mode: 0o750 });
        const r = await runCli(["cluster", "init", "--data-dir", this.dataDir]);
        if (r.code !== 0) throw new Error(`cluster init for ${this.name} failed: ${r.stderr}`);
      }
      return [];
    }
    if (existsSync(path.join(pkiDir, "node.crt"))) return [];
    const r = await this.pki.tokenFrom.cli(["cluster", "token", "create", "--ttl", "10m", "--json"]);
    if (r.code !== 0) throw new Error(`cluster token create on ${this.pki.tokenFrom.name} for ${this.name} failed: ${r.stderr}`);
    return ["--join", this.pki.tokenFrom.gossipAddress, "--token", (JSON.parse(r.stdout) as { token: string }).token];
  }

  /** Production mode's config file, beside the data dir. */
  get configFile() { return `${this.dataDir}.yaml`; }

  get grpcAddress() { return `${this.bind}:7400`; }
  /** Production mode's local socket (the gRPC API for root on the node). */
  get socketPath() { return this.opts.env?.THOC_LOCAL_SOCKET ?? path.join(this.dataDir, "thoc.sock"); }
  /** What a test's operator client dials: the local socket in production mode (admin), the gRPC port in dev mode (everyone is admin). */
  get clientAddress() { return this.dev ? this.grpcAddress : `unix:${this.socketPath}`; }
  get httpUrl() { return `http://${this.bind}:7401`; }
  get s3Url() { return `http://${this.bind}:7480`; }
  get gossipAddress() { return `${this.bind}:7946`; }
  get running() { return this.proc !== undefined && this.exitCode === null && this.exitSignal === null; }

  /** Spawns the process (does not wait for readiness). */
  spawn(extraArgs: string[] = []): void {
    const logLevel = process.env.THOC_TEST_LOG_LEVEL ?? "info";
    let args: string[];
    let env: Record<string, string | undefined>;
    if (this.dev) {
      args = [CLI, "agent", "--dev", "--name", this.name, "--bind", this.bind, "--data-dir", this.dataDir, "--log-level", logLevel,
        ...(this.opts.join ?? []).flatMap((j) => ["--join", j])];
      env = { ...inheritedEnv(), THOC_PRESET: "test", ...this.opts.env };
    } else {
      // A data dir made 0750 root:root beforehand (as install.sh did before it made it 0710 root:libvirt-qemu;
      // on the test driver the agent leaves it so), settings in the YAML file, no --dev.
      mkdirSync(this.dataDir, { recursive: true, mode: 0o750 });
      const file: Record<string, unknown> = {
        preset: "test", name: this.name, bind: this.bind, dataDir: this.dataDir, join: this.opts.join ?? [], logLevel,
        // Production's qemu:///system needs libvirtd; the VM-agnostic tests run on the test driver in both modes.
        hypervisorUri: "test:///default",
        localSocket: this.socketPath,
        cluster: { keys: [this.clusterKey] },
        ...this.opts.config,
      };
      env = { ...inheritedEnv(), ...this.opts.env };
      for (const [k, [section, key]] of Object.entries(FILE_ENV)) {
        if (env[k] === undefined) continue;
        const sec = (file[section!] ??= {}) as Record<string, unknown>;
        sec[key!] = env[k];
        delete env[k];
      }
      delete env.THOC_PRESET;
      writeFileSync(this.configFile, `# Written by test/harness.ts, as /etc/thoc/node.yaml on a node.\n${stringify(file)}`, { mode: 0o640 });
      args = [CLI, "agent", "--config", this.configFile];
    }
    args.push(...(this.opts.args ?? []), ...extraArgs);
    this.exitCode = null;
    this.exitSignal = null;
    const w = this.opts.wrap ?? [];
    const p = spawn(w[0] ?? process.execPath, w.length ? [...w.slice(1), process.execPath, ...args] : args, {
      cwd: REPO_ROOT,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.proc = p;
    const add = (b: Buffer) => {
      this.output += b.toString();
      if (this.output.length > 4_000_000) this.output = this.output.slice(-2_000_000);
    };
    p.stdout!.on("data", add);
    p.stderr!.on("data", add);
    this.exited = once(p, "exit").then(([code, sig]) => {
      this.exitCode = code as number | null;
      this.exitSignal = sig as NodeJS.Signals | null;
    });
  }

  /**
   * Resolves when /readyz answers 200; rejects if the process exits first or time runs out. 60 s:
   * an agent is ready in 1-3 s, but on the shared 2-core CI machine at load ~13 one took over 30 s.
   */
  async waitReady(timeoutMs = 60_000): Promise<number> {
    const t0 = Date.now();
    while (Date.now() - t0 < timeoutMs) {
      if (!this.running) throw new Error(`agent ${this.name} exited (code ${this.exitCode}, signal ${this.exitSignal}) before ready:\n${this.output.slice(-3000)}`);
      try {
        const r = await fetch(`${this.httpUrl}/readyz`, { signal: AbortSignal.timeout(1000) });
        if (r.status === 200) return Date.now() - t0;
      } catch { /* not listening yet */ }
      await sleep(50);
    }
    throw new Error(`agent ${this.name} not ready after ${timeoutMs} ms:\n${this.output.slice(-3000)}`);
  }

  /** Resolves with the exit code once the process has exited (null if a signal ended it). */
  async waitExit(): Promise<number | null> {
    await this.exited;
    return this.exitCode;
  }

  /** Spawns without waiting for readiness: for an agent that must never become ready (it cannot join). */
  async launch(): Promise<void> {
    this.spawn(await this.bootstrapArgs());
  }

  async start(timeoutMs?: number): Promise<number> {
    this.spawn(await this.bootstrapArgs());
    return this.waitReady(timeoutMs);
  }

  /** Sends a signal and waits for the exit; returns the exit code (null if killed by the signal). */
  async kill(signal: NodeJS.Signals = "SIGTERM", timeoutMs = 15_000): Promise<number | null> {
    if (!this.running) return this.exitCode;
    this.proc!.kill(signal);
    const t = setTimeout(() => this.proc?.kill("SIGKILL"), timeoutMs);
    await this.exited;
    clearTimeout(t);
    return this.exitCode;
  }

  async restart(signal: NodeJS.Signals = "SIGTERM"): Promise<number> {
    await this.kill(signal);
    return this.start();
  }

  /** Parsed JSON log lines (pino) written so far. */
  logs(): Record<string, unknown>[] {
    return this.output.split("\n").filter((l) => l.startsWith("{")).flatMap((l) => {
      try { return [JSON.parse(l) as Record<string, unknown>]; } catch { return []; }
    });
  }

  /** The CLI's global options that reach this agent as admin: its local socket in production mode, its gRPC port in dev mode. */
  get cliTarget(): string[] {
    return this.dev || this.opts.cliOverTcp ? ["--addr", this.grpcAddress] : ["--socket", this.socketPath];
  }

  /** Runs the CLI against this agent; resolves with its exit code and output. */
  cli(args: string[], timeoutMs = 20_000): Promise<CliResult> {
    return runCli([...this.cliTarget, ...args], timeoutMs, this.cliEnv);
  }
}

/**
 * The test process's environment without systemd's notification variables: run under a
 * Type=notify service (a CI runner), agents would otherwise report to that service's systemd.
 * A test that wants them (test/systemd-notify.test.ts) sets its own.
 */
function inheritedEnv(): NodeJS.ProcessEnv {
  const { NOTIFY_SOCKET: _s, WATCHDOG_USEC: _u, WATCHDOG_PID: _p, ...rest } = process.env;
  return rest;
}

export interface CliResult { code: number | null; stdout: string; stderr: string }

export function runCli(args: string[], timeoutMs = 20_000, env: Record<string, string> = {}, input?: string): Promise<CliResult> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
    let stdout = "", stderr = "";
    p.stdout!.on("data", (b: Buffer) => (stdout += b));
    p.stderr!.on("data", (b: Buffer) => (stderr += b));
    if (input !== undefined) p.stdin!.end(input);
    const t = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
    // close, not exit: exit can come before the pipes have given up their last bytes (seen under load: an empty stderr).
    p.on("close", (code) => { clearTimeout(t); resolve({ code, stdout, stderr }); });
  });
}

export interface ClusterOptions extends AgentOptions {
  /** Join every agent after the first to the first one's gossip address (default true). */
  join?: boolean;
  namePrefix?: string;
}

export class Cluster {
  readonly agents: AgentProcess[] = [];
  private readonly opts: ClusterOptions;
  constructor(readonly root: string, readonly block: string, opts: ClusterOptions) {
    // One cluster key for all its agents (prod mode).
    this.opts = { ...opts, clusterKey: opts.clusterKey ?? newClusterKey() };
  }

  /** Adds (but does not start) agent number i+1 at 127.X.Y.(i+2). */
  add(): AgentProcess {
    const i = this.agents.length;
    const bind = `${this.block}.${i + 2}`;
    const seeds = this.opts.join === false || i === 0 ? [] : [this.agents[0]!.gossipAddress];
    // Production mode: the first agent holds the cluster CA, the others join with a token from it.
    const pki = i === 0 || this.opts.pki === false ? this.opts.pki : { tokenFrom: this.agents[0]! };
    const a = new AgentProcess(`${this.opts.namePrefix ?? "n"}${i + 1}`, bind, path.join(this.root, `n${i + 1}`), { ...this.opts, join: seeds, ...(pki !== undefined ? { pki } : {}) });
    this.agents.push(a);
    return a;
  }

  async stop(): Promise<void> {
    await Promise.all(this.agents.map((a) => a.kill("SIGKILL")));
    if (!process.env.THOC_TEST_KEEP) await rm(this.root, { recursive: true, force: true });
  }
}

/** Starts n agents and waits until all are ready. Call cluster.stop() in an after hook. */
export async function startCluster(n: number, opts: ClusterOptions = {}): Promise<Cluster> {
  const root = await mkdtemp(path.join(tmpdir(), "thoc-cluster-"));
  const c = new Cluster(root, loopbackBlock(), opts);
  for (let i = 0; i < n; i++) c.add();
  try {
    // With a cluster PKI the others need a join token from the first, so it starts first.
    const [first, ...rest] = c.agents;
    if (first?.pki === "init") await first.start();
    await Promise.all((first?.pki === "init" ? rest : c.agents).map((a) => a.start()));
  } catch (err) {
    await c.stop();
    throw err;
  }
  return c;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls fn until it returns a truthy value or time runs out (then throws with the last value). */
export async function waitFor<T>(what: string, fn: () => Promise<T> | T, timeoutMs = 20_000, everyMs = 100): Promise<NonNullable<T>> {
  const t0 = Date.now();
  let last: unknown;
  while (Date.now() - t0 < timeoutMs) {
    try {
      last = await fn();
      if (last) return last as NonNullable<T>;
    } catch (err) { last = err; }
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
}
