import { randomBytes } from "node:crypto";
import type { Command } from "commander";

export function registerKeygen(program: Command): void {
  program
    .command("keygen")
    .description("print a new cluster key (32 random bytes, base64) for cluster.keys / THOC_CLUSTER_KEYS")
    .action(() => {
      process.stdout.write(randomBytes(32).toString("base64") + "\n");
    });
}
