/**
 * `thoc-node`: the agent and the operator CLI (SPEC §2). Every command except
 * `agent` and `keygen` talks to an agent over gRPC.
 *
 * Start-up time is part of the CLI's interface: nothing here or in a command's
 * module loads what only the agent needs (config/, core/'s logger, subsystems,
 * native modules); test/cli-load.test.ts checks it, bench/cli.ts times it.
 */
import { Command, CommanderError } from "commander";
import { registerAgent } from "./commands/agent.js";
import { registerKeygen } from "./commands/keygen.js";
import { registerMembers } from "./commands/members.js";
import { registerStatus } from "./commands/status.js";
import { registerVm } from "./commands/vm.js";
import { registerCt } from "./commands/ct.js";
import { registerImage } from "./commands/image.js";
import { registerS3 } from "./commands/s3.js";
import { registerRing } from "./commands/ring.js";
import { registerPki } from "./commands/pki.js";
import { registerEvents } from "./commands/events.js";
import { registerLeader } from "./commands/leader.js";
import { registerConfig } from "./commands/config.js";
import { registerCompletion } from "./commands/completion.js";

/** Commander's usage errors that are bad input (a value outside --output's choices, --json with --output): exit 2, as every bad input. */
const BAD_INPUT = new Set(["commander.invalidArgument", "commander.conflictingOption"]);

/**
 * The version string, loaded only when asked for: core/index.ts also carries
 * the logger (pino), and --help lists the option without printing the string.
 */
async function versionIfAsked(argv: string[]): Promise<string> {
  if (!argv.includes("-V") && !argv.includes("--version")) return "";
  return (await import("../core/index.js")).VERSION;
}

export function buildProgram(version: string): Command {
  const program = new Command("thoc-node")
    .description("THOC node agent and CLI")
    .version(version, "-V, --version")
    .option("--addr <host:port>", "agent gRPC address (default $THOC_ADDR, the profile's addr, the local socket if present, else 127.0.0.1:7400)")
    .option("--socket <path>", "the local agent's unix socket (default $THOC_SOCKET or /run/thoc/thoc.sock; root and group thoc are admin)")
    .option("--tls-ca <file>", "CA bundle to verify the agent's TLS certificate (default $THOC_TLS_CA; none = plaintext)")
    .option("--tls-cert <file>", "operator certificate from `thoc-node cert issue` (default $THOC_TLS_CERT)")
    .option("--tls-key <file>", "its private key (default $THOC_TLS_KEY)")
    .option("--timeout <ms>", "deadline for each call in milliseconds", "10000")
    .addHelpText("after", "\nConnection settings may also come from ~/.config/thoc/profile.json ($THOC_PROFILE):\n  {\"addr\": \"10.0.0.5:7400\", \"tlsCa\": \"ca.crt\", \"tlsCert\": \"alice.crt\", \"tlsKey\": \"alice.key\"}\nFlags beat THOC_* variables, which beat the profile. Global options go before or after the command.")
    .showHelpAfterError("(run with --help for usage)")
    // Set before the subcommands are added: they inherit it. Commander has already printed its message.
    .exitOverride((err) => { if (BAD_INPUT.has(err.code)) process.exit(2); });
  registerAgent(program);
  registerStatus(program);
  registerVm(program);
  registerCt(program);
  registerImage(program);
  registerS3(program);
  registerKeygen(program);
  registerMembers(program);
  registerRing(program);
  registerPki(program);
  registerEvents(program);
  registerLeader(program);
  registerConfig(program);
  // Last: it describes the tree the others built.
  registerCompletion(program);
  return program;
}

versionIfAsked(process.argv).then((v) => buildProgram(v).parseAsync(process.argv)).catch((err: unknown) => {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  process.stderr.write(`thoc-node: ${(err as Error).message}\n`);
  process.exit(1);
});
