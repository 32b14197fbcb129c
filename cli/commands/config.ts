/**
 * `thoc-node config validate [FILE]`: the agent's configuration checked the
 * way `thoc-node agent` checks it at start, without starting anything: the
 * same loader (file < THOC_* environment), the same cross-field checks and
 * the same reads of the files it names, so the answer is the agent's own:
 * exit 0 with a short summary, or exit 2 with the very message the agent
 * would print. What it cannot know without the host's libvirt (KVM, QEMU's
 * access to the data dir) the agent still checks at start.
 *
 * Secrets (cluster keys, S3 secret, join token) are never printed: the
 * summary counts keys and names where values came from.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import type { Config } from "../../config/index.js";
import { ThocError } from "../../errors/index.js";
import { outputFormat, outputOptions, printJson, table } from "../output.js";

interface ValidateOpts { config?: string; dev?: boolean; output?: string; json?: boolean }

export function registerConfig(program: Command): void {
  const config = program.command("config").description("the agent's configuration file");
  outputOptions(config.command("validate [file]")
    .description("check a config file as the agent would at start, with the THOC_* environment applied: exit 0 and a summary, or exit 2 and the agent's message (default /etc/thoc/node.yaml)")
    .option("--config <file>", "the file to check, as `agent --config` names it (same as FILE)")
    .option("--dev", "check it as `agent --dev` would"), "print one JSON document: the resolved config with secrets redacted")
    .action(async (file: string | undefined, o: ValidateOpts) => {
      if (file && o.config && file !== o.config) bad(new ThocError("invalid_argument", `config validate: FILE ${file} and --config ${o.config} name different files: give one`));
      const format = outputFormat(o);
      // Loaded here, like `agent` does: other commands need neither the YAML parser nor core/.
      const [{ loadConfig, DEFAULT_CONFIG_FILE, redacted, listOptions }, { checkConfigFiles }] = await Promise.all([import("../../config/index.js"), import("../../core/index.js")]);
      const want = file ?? o.config;
      let cfg: Config;
      try {
        cfg = loadConfig({ file: want, dev: Boolean(o.dev) });
        checkConfigFiles(cfg);
      } catch (err) {
        bad(err);
      }
      const envOf = new Map(listOptions().map((x) => [x.path, x.env]));
      const fromEnv = Object.entries(cfg.sources).filter(([, src]) => src === "env").map(([key]) => ({ key, env: envOf.get(key) ?? "" }));
      const read = cfg.configFile ?? `none (${want ?? DEFAULT_CONFIG_FILE} does not exist: defaults and the environment only)`;
      if (format === "json") return printJson({ ok: true, file: cfg.configFile ?? null, environment: fromEnv, config: redacted(cfg) });
      const pki = path.join(cfg.dataDir, "pki");
      const tls = cfg.tls.certFile ? `tls.certFile ${cfg.tls.certFile}` : existsSync(path.join(pki, "ca.crt")) ? `the cluster PKI in ${pki}` : cfg.pki.joinToken ? "the cluster PKI (from the join token)" : "none: plaintext gRPC (--dev or loopback only)";
      const rows: string[][] = [
        ["file", read],
        ["name", cfg.name],
        ["data dir", cfg.dataDir],
        ["listen", `${cfg.bind} grpc ${cfg.grpcPort}, admin ${cfg.httpPort}, s3 ${cfg.s3Port}, gossip ${cfg.gossipPort}`],
        ["join", cfg.join.join(", ") || "none (first node)"],
        ["cluster keys", `${cfg.cluster.keys.length}${cfg.dev && cfg.sources["cluster.keys"] === "default" ? " (the dev key)" : ""}`],
        ["tls", tls],
        ["s3 tls", cfg.s3.tls.certFile || "none (plain HTTP)"],
        ["hypervisor", cfg.hypervisorUri],
        ["environment", fromEnv.map((x) => `${x.env} (${x.key})`).join(", ") || "no THOC_* overrides"],
      ];
      if (format === "wide") rows.push(...Object.entries(cfg.sources).filter(([, s]) => s !== "default" && s !== "env").map(([k, s]) => [`  ${k}`, `from ${s}`]));
      process.stdout.write(`ok: the configuration is valid\n${table(rows)}\n`);
    });
}

/** The agent's own words for a bad config, and its exit code. */
function bad(err: unknown): never {
  process.stderr.write(`thoc-node: ${ThocError.from(err).message}\n`);
  process.exit(2);
}
