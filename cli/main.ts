/**
 * `thoc-node`: the agent and the operator CLI (SPEC §2). Every command except
 * `agent` and `keygen` talks to an agent over gRPC.
 */
import { Command, CommanderError } from "commander";
import { VERSION } from "../core/index.js";
import { registerAgent } from "./commands/agent.js";
import { registerKeygen } from "./commands/keygen.js";
import { registerMembers } from "./commands/members.js";
import { registerStatus } from "./commands/status.js";
import { registerVm } from "./commands/vm.js";
import { registerImage } from "./commands/image.js";
import { registerS3 } from "./commands/s3.js";
import { registerRing } from "./commands/ring.js";

export function buildProgram(): Command {
  const program = new Command("thoc-node")
    .description("THOC node agent and CLI")
    .version(VERSION, "-V, --version")
    .option("--addr <host:port>", "agent gRPC address (default $THOC_ADDR or 127.0.0.1:7400)")
    .option("--tls-ca <file>", "CA bundle to verify the agent's TLS certificate (default $THOC_TLS_CA; none = plaintext)")
    .option("--timeout <ms>", "deadline for each call in milliseconds", "10000")
    .showHelpAfterError("(run with --help for usage)")
    .enablePositionalOptions();
  registerAgent(program);
  registerStatus(program);
  registerVm(program);
  registerImage(program);
  registerS3(program);
  registerKeygen(program);
  registerMembers(program);
  registerRing(program);
  return program;
}

buildProgram().parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  process.stderr.write(`thoc-node: ${(err as Error).message}\n`);
  process.exit(1);
});
