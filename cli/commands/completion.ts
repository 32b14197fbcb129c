/**
 * `thoc-node completion bash|zsh`: the shell completion script, generated from
 * the command tree at run time (cli/completion.ts), so it always matches the
 * installed CLI.
 */
import type { Command } from "commander";
import { ThocError } from "../../errors/index.js";
import { bashScript, zshScript } from "../completion.js";
import { fail } from "../output.js";

const SHELLS: Record<string, (p: Command) => string> = { bash: bashScript, zsh: zshScript };

export function registerCompletion(program: Command): void {
  program
    .command("completion")
    .argument("<shell>", "bash or zsh")
    .description("print a shell completion script: source <(thoc-node completion bash), or see docs/cli.md to install it")
    .action((shell: string) => {
      const make = SHELLS[shell];
      if (!make) fail(new ThocError("invalid_argument", `completion: no script for shell "${shell}": use bash or zsh`));
      process.stdout.write(make(program));
    });
}
