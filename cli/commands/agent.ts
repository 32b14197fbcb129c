/**
 * `thoc-node agent`: load config (file < env < flags), start the agent, and
 * stop it cleanly on SIGTERM/SIGINT. Exit codes: 0 clean stop, 2 bad config,
 * 3 cannot start (port in use, data dir locked), 1 anything else.
 */
import { Command, Option } from "commander";
import type { Agent } from "../../agent/index.js";
import type { Config } from "../../config/index.js";
import type { Logger } from "../../core/index.js";
import { ThocError } from "../../errors/index.js";

/** Flags listed in SPEC §2; each maps to the config option with the same flag. */
const FLAGS: [string, string][] = [
  ["--name <name>", "node name (default: host name; with --dev: dev or dev-<bind>)"],
  ["--bind <addr>", "address every listener binds (default 0.0.0.0; with --dev 127.0.0.1)"],
  ["--advertise <addr>", "address other nodes use to reach this one"],
  ["--grpc-port <n>", "gRPC API port (default 7400)"],
  ["--http-port <n>", "admin HTTP port (default 7401)"],
  ["--s3-port <n>", "S3 API port (default 7480)"],
  ["--gossip-port <n>", "gossip UDP+TCP port (default 7946)"],
  ["--data-dir <dir>", "data directory (default /var/lib/thoc; with --dev ./.thoc/<name>)"],
  ["--hypervisor-uri <uri>", "libvirt URI (default qemu:///system; with --dev test:///default)"],
  ["--log-level <level>", "trace|debug|info|warn|error|fatal|silent (default info)"],
  // Checked by the config like every other value, so a bad one is exit 2 with the config's message.
  ["--preset <preset>", "timer preset: lan or local"],
  ["--token <token>", "one-time join token (thoc-node cluster token create): get this node's certificate from the cluster at first start"],
  ["--join-grpc <host:port>", "gRPC address the token join talks to (default: the first --join seed's host, this node's gRPC port)"],
];

export function registerAgent(program: Command): void {
  const cmd = program
    .command("agent")
    .description("run the node agent (systemd runs this; --dev runs a complete single-node cluster with no configuration)")
    .option("--config <file>", "YAML config file (default /etc/thoc/node.yaml if present)")
    .option("--dev", "development mode: data under ./.thoc/<name>, test hypervisor, dev cluster key, plaintext, generated S3 keys")
    .addOption(new Option("--join <host:port...>", "seed agents to join (gossip address; repeatable)"));
  for (const [f, d] of FLAGS) cmd.option(f, d);
  cmd.action(async (opts: Record<string, unknown>) => {
    const flags: Record<string, unknown> = {};
    for (const [f] of FLAGS) {
      const long = f.split(" ")[0]!;
      const key = long.slice(2).replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
      flags[long] = opts[key];
    }
    flags["--join"] = opts.join;
    // Loaded here, not at the top, like the agent below: other commands need neither (yaml, pino).
    const { loadConfig } = await import("../../config/index.js");
    let config: Config;
    try {
      config = loadConfig({ file: opts.config as string | undefined, dev: Boolean(opts.dev), flags });
    } catch (err) {
      process.stderr.write(`thoc-node: ${ThocError.from(err).message}\n`);
      process.exit(2);
    }
    await runAgent(config);
  });
}

/** After the first signal the process is gone within shutdownTimeout + this, whatever it is stuck on. */
const HARD_EXIT_MARGIN_MS = 3000;

export async function runAgent(config: Config): Promise<void> {
  // V8 sizes a small heap's next collection at ~2x what survived the last (22 MB live: a 45 MB limit) and, while
  // bodies stream through (each socket read a new Buffer), kept starting full collections every 150-250 ms on a
  // replica: ~2.5 ms of its ~5 ms CPU per MiB received in a 3-node 64 MiB PUT. A fixed 3x growth leaves 2-3
  // collections per 384 MiB (docs/benchmarks.md, round six). heap_growing_percent is read at every collection, so
  // setting it here, after start-up, takes effect; the memory reducer still shrinks an idle heap.
  (await import("node:v8")).setFlagsFromString("--heap-growing-percent=200");
  const [{ redacted }, { createLogger, VERSION }] = await Promise.all([import("../../config/index.js"), import("../../core/index.js")]);
  const log = createLogger(config.logLevel, { node: config.name });
  // Loaded here, not at the top: only this command needs the subsystems (koffi, LevelDB).
  const { Agent, connectSystemd, createSubsystems, exitBounded, exitDeadline } = await import("../../agent/index.js");
  // Under systemd (Type=notify): keep-alives from now on, status lines as the start goes, READY=1 below.
  const systemd = connectSystemd(log);
  systemd?.progress(`thoc-node ${VERSION}`);
  systemd?.startWatchdog();
  const agent = new Agent(config, log, createSubsystems(config), { progress: (step) => systemd?.progress(step) });
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    if (++signals > 1) {
      log.warn({ signal: sig }, "second signal: exiting now");
      exitBounded(1);
    }
    log.info({ signal: sig }, "stopping");
    systemd?.stopping(`${sig}: leaving the cluster, finishing calls under way`);
    // The kernel ends the process at this deadline even if the event loop or a libvirt thread is stuck;
    // the timer below is the orderly version of the same, a little earlier.
    exitDeadline((config.shutdownTimeout + HARD_EXIT_MARGIN_MS) / 1000);
    const hard = setTimeout(() => { log.error("shutdown took too long: exiting"); exitBounded(1); }, config.shutdownTimeout + 1500);
    hard.unref();
    agent.stop().then(() => {
      log.info("stopped");
      log.flush?.();
      exitBounded(0);
    }, (err) => { log.error({ err }, "stop failed"); exitBounded(1); });
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  process.on("uncaughtException", (err) => {
    // Keep serving: one bad request must never take the node down. Log loudly.
    log.error({ err }, "uncaught exception");
  });
  process.on("unhandledRejection", (err) => log.error({ err }, "unhandled promise rejection"));

  const t0 = Date.now();
  try {
    log.info({ version: VERSION, preset: config.preset, config: redacted(config), configFile: config.configFile }, "starting");
    await agent.start();
  } catch (err) {
    const e = ThocError.from(err);
    log.error({ err: e.code === "internal" ? err : undefined, code: e.code }, e.message);
    process.stderr.write(`thoc-node: ${e.message}\n`);
    systemd?.failed(e.message);
    exitDeadline((config.shutdownTimeout + HARD_EXIT_MARGIN_MS) / 1000);
    await agent.stop().catch(() => {});
    exitBounded(e.code === "invalid_argument" ? 2 : e.code === "failed_precondition" ? 3 : 1);
  }
  const a = agent.addresses;
  log.info({ nodeId: agent.nodeId, grpc: a.grpc, http: a.http, s3: a.s3, gossip: a.gossip, startMs: Date.now() - t0 }, "agent ready");
  // READY=1 when /readyz would say 200, which may be later than now (a joining node waits for the ring).
  systemd?.watch(() => agent.health());
  if (config.dev) banner(log, agent, VERSION);
}

function banner(_log: Logger, agent: Agent, VERSION: string): void {
  const a = agent.addresses;
  process.stderr.write([
    "",
    `thoc-node ${VERSION} dev agent "${agent.config.name}" (${agent.nodeId}) is running`,
    `  gRPC     ${a.grpc}      thoc-node --addr ${a.grpc} status`,
    `  admin    http://${a.http}/metrics  /healthz  /readyz`,
    `  S3       http://${a.s3}`,
    `  gossip   ${a.gossip}`,
    `  data     ${agent.config.dataDir}`,
    `  auth     OFF: --dev serves every caller as admin, with no certificate (never expose a dev agent)`,
    "",
  ].join("\n") + "\n");
}
