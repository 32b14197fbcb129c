/**
 * `thoc-node events [--follow] [--json] [--tail N]`: the node's audit events
 * (EventService.WatchEvents): who called which mutating method on what, and
 * the outcome. --json prints one JSON object per line (a stream, not one document).
 */
import type { Command } from "commander";
import type { Event } from "../../proto/index.js";
import { agentAddress, connect, globalOpts } from "../connect.js";
import { fail } from "../output.js";

const eventJson = (e: Event) => ({
  time: new Date(Number(e.timeMs)).toISOString(), node: e.node, who: e.who, method: e.method, role: e.role,
  target: e.target, outcome: e.outcome, code: e.code, message: e.message || undefined, requestId: e.requestId,
});

function line(e: Event): string {
  const target = Object.entries(e.target).map(([k, v]) => `${k}=${v}`).join(" ");
  const method = e.method.replace(/^\/thoc\.node\.v1\./, "");
  return [new Date(Number(e.timeMs)).toISOString(), e.outcome.padEnd(17), method, target, `by ${e.who}`, e.message ? `: ${e.message}` : ""].filter(Boolean).join("  ");
}

export function registerEvents(program: Command): void {
  program
    .command("events")
    .description("show this node's audit events (mutating calls: who, what, outcome); --follow keeps streaming")
    .option("-f, --follow", "keep the stream open and print new events as they happen")
    .option("--tail <n>", "past events to show first (the node keeps the last 1000)", "100")
    .option("--json", "one JSON object per event and line")
    .action(async (opts: { follow?: boolean; tail: string; json?: boolean }, cmd: Command) => {
      const g = globalOpts(cmd);
      const tail = Number(opts.tail);
      if (!Number.isInteger(tail) || tail < 0) {
        process.stderr.write(`thoc-node: --tail: expected a whole number, got ${opts.tail}\n`);
        process.exit(2);
      }
      // A followed stream must outlive the per-call deadline.
      const client = await connect((p) => p.EventService, opts.follow ? { ...g, timeout: "0" } : g);
      try {
        for await (const e of client.watchEvents({ follow: Boolean(opts.follow), tail })) {
          process.stdout.write((opts.json ? JSON.stringify(eventJson(e)) : line(e)) + "\n");
        }
      } catch (err) {
        fail(err, agentAddress(g));
      } finally {
        client.close();
      }
    });
}
