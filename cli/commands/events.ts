/**
 * `thoc-node events [--follow] [--json] [--tail N] [--cursor C] [--kind K,..] [--vm NAME] [--node NAME]`:
 * the cluster's events (EventService.WatchEvents on the node the CLI talks
 * to, which fans in every live member): audit records (who called which
 * mutating method on what, and the outcome), VM lifecycle, membership and
 * leader changes. --json prints one JSON object per line (a stream, not one
 * document), each with its `cursor`.
 *
 * A followed stream that breaks (the agent crashed or the network dropped)
 * is reopened from the last cursor, with backoff, for up to 30 s; a stream
 * the agent ends itself (it is stopping) ends the command with status 0.
 */
import type { Command } from "commander";
import type { Event } from "../../proto/index.js";
import { agentAddress, connect, globalOpts } from "../connect.js";
import { fail, outputFormat, outputOptions } from "../output.js";

const RETRY_FOR_MS = 30_000;
/** Errors no reconnect can fix: the request or the caller is wrong. */
const FINAL = new Set(["invalid_argument", "permission_denied", "unauthenticated", "unimplemented", "failed_precondition", "resource_exhausted"]);

export function eventJson(e: Event): Record<string, unknown> {
  const base = { time: new Date(Number(e.timeMs)).toISOString(), kind: e.kind || "audit", node: e.node, nodeId: e.nodeId || undefined, epoch: e.epoch ? Number(e.epoch) : undefined, seq: e.seq ? Number(e.seq) : undefined, cursor: e.cursor || undefined };
  switch (e.kind) {
    case "vm": return { ...base, vm: e.vm?.name, action: e.vm?.action, status: e.vm?.status, previousStatus: e.vm?.previousStatus, by: e.vm?.triggeredBy, detail: e.vm?.detail || undefined };
    case "container": {
      const c = e.container;
      return { ...base, container: c?.name, action: c?.action, status: c?.status, previousStatus: c?.previousStatus, by: c?.triggeredBy, detail: c?.detail || undefined, exitCode: c?.action === "exited" || c?.action === "restarting" ? c.exitCode : undefined, restartCount: c?.restartCount || undefined };
    }
    case "node": return { ...base, member: e.member?.name, memberId: e.member?.id, action: e.member?.action };
    case "leader": return { ...base, leader: e.leader?.leaderName, leaderId: e.leader?.leaderId, term: Number(e.leader?.term ?? 0) };
    case "missed": return { ...base, missed: Number(e.missed?.count ?? 0), reason: e.missed?.reason };
    default: return {
      ...base, who: e.who, method: e.method, role: e.role, target: e.target, outcome: e.outcome, code: e.code, message: e.message || undefined, requestId: e.requestId,
    };
  }
}

export function eventLine(e: Event): string {
  const head = [new Date(Number(e.timeMs)).toISOString(), e.node.padEnd(10), (e.kind || "audit").padEnd(6)];
  let what: string;
  switch (e.kind) {
    case "vm": {
      const v = e.vm!;
      what = `vm ${v.name} ${v.action}${v.previousStatus ? ` (was ${v.previousStatus})` : ""} by ${v.triggeredBy}${v.detail ? `: ${v.detail}` : ""}`;
      break;
    }
    case "container": {
      const c = e.container!;
      what = `container ${c.name} ${c.action}${c.previousStatus ? ` (was ${c.previousStatus})` : ""} by ${c.triggeredBy}${c.detail ? `: ${c.detail}` : ""}`;
      break;
    }
    case "node": what = `node ${e.member?.name} ${e.member?.action}`; break;
    case "leader": what = `leader ${e.leader?.leaderName} (term ${e.leader?.term})`; break;
    case "missed": what = `${e.missed?.count ? `${e.missed.count} events` : "events"} missed: ${e.missed?.reason}`; break;
    default: {
      const target = Object.entries(e.target).map(([k, v]) => `${k}=${v}`).join(" ");
      const method = e.method.replace(/^\/thoc\.node\.v1\./, "");
      what = [e.outcome.padEnd(17), method, target, `by ${e.who}`, e.message ? `: ${e.message}` : ""].filter(Boolean).join("  ");
    }
  }
  return [...head, what].join("  ");
}

/** What wide adds to a line: the node id, and the cursor to resume after it (and an audit record's request id). */
const wideTail = (e: Event) => [`node-id=${e.nodeId || "-"}`, `cursor=${e.cursor || "-"}`, ...(e.kind ? [] : [`request=${e.requestId || "-"}`])].join(" ");

interface EventsOpts { follow?: boolean; tail: string; output?: string; json?: boolean; cursor?: string; kind?: string; vm?: string; node?: string }

export function registerEvents(program: Command): void {
  outputOptions(program
    .command("events")
    .description("show the cluster's events (audit, VM lifecycle, members, leader) from every live node; --follow keeps streaming")
    .option("-f, --follow", "keep the stream open and print new events as they happen (reconnects from the last cursor if it breaks)")
    .option("--tail <n>", "past events to show first, per node (a node keeps the last 1000)", "100")
    .option("--cursor <c>", "resume after this cursor (an event's `cursor` in --json): every later event, no gaps")
    .option("--kind <kinds>", "only these kinds, comma-separated: audit, vm, container, node, leader")
    .option("--vm <name>", "only events about this VM")
    .option("--node <name>", "only events from or about this node (name or id)"),
  "one JSON object per event and line, with its cursor")
    .action(async (opts: EventsOpts, cmd: Command) => {
      const format = outputFormat(opts);
      const g = globalOpts(cmd);
      const tail = Number(opts.tail);
      if (!Number.isInteger(tail) || tail < 0) {
        process.stderr.write(`thoc-node: --tail: expected a whole number, got ${opts.tail}\n`);
        process.exit(2);
      }
      // A followed stream must outlive the per-call deadline.
      const client = await connect((p) => p.EventService, opts.follow ? { ...g, timeout: "0" } : g);
      let cursor = opts.cursor ?? "";
      let failingSince: number | undefined;
      let backoff = 250;
      try {
        for (;;) {
          try {
            const req = { follow: Boolean(opts.follow), tail, cursor, kinds: opts.kind ? [opts.kind] : [], vm: opts.vm ?? "", node: opts.node ?? "" };
            for await (const e of client.watchEvents(req)) {
              failingSince = undefined;
              backoff = 250;
              if (e.cursor) cursor = e.cursor;
              process.stdout.write((format === "json" ? JSON.stringify(eventJson(e)) : format === "wide" ? `${eventLine(e)}  ${wideTail(e)}` : eventLine(e)) + "\n");
            }
            return;
          } catch (err) {
            const code = (err as { code?: string }).code ?? "";
            failingSince ??= Date.now();
            if (!opts.follow || FINAL.has(code) || Date.now() - failingSince > RETRY_FOR_MS) throw err;
            process.stderr.write(`thoc-node: event stream from ${agentAddress(g)} broke (${(err as Error).message.split("\n")[0]}); reconnecting${cursor ? " from the last cursor" : ""}\n`);
            await new Promise((r) => setTimeout(r, backoff));
            backoff = Math.min(backoff * 2, 4000);
          }
        }
      } catch (err) {
        fail(err, agentAddress(g));
      } finally {
        client.close();
      }
    });
}
