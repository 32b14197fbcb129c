/**
 * `thoc-node leader [--json]`: the scheduler leader as the agent sees it: who
 * leads, in which term and since when, the voters and whether each answers,
 * and this node's role (SchedulerService.GetLeader).
 */
import type { Command } from "commander";
import { agentAddress, connect, globalOpts } from "../connect.js";
import { fail, outputFormat, outputOptions, printJson, table } from "../output.js";

export function registerLeader(program: Command): void {
  outputOptions(program
    .command("leader")
    .description("show the scheduler leader: id, name, term, since when, the voters and their state, this node's role"),
  'print one JSON document: {"leader": {"id", "name", "grpcAddress"}, "term", "since", "role", "voters": [{"id", "name", "state"}]}')
    .action(async (opts: { output?: string; json?: boolean }, cmd: Command) => {
      const format = outputFormat(opts);
      const g = globalOpts(cmd);
      const client = await connect((p) => p.SchedulerService, g);
      try {
        const r = await client.getLeader({});
        const since = r.sinceMs ? new Date(Number(r.sinceMs)).toISOString() : null;
        const doc = {
          leader: r.leader ? { id: r.leader.id, name: r.leader.name, grpcAddress: r.leader.grpcAddress } : null,
          term: Number(r.term), since, role: r.role,
          voters: r.voters.map((v) => ({ id: v.id, name: v.name, state: v.state })),
          configVersion: Number(r.configVersion), configCommitted: r.configCommitted, acting: r.acting, node: { id: r.nodeId, name: r.nodeName },
        };
        if (format === "json") return printJson(doc);
        console.log(table([
          ["leader", r.leader ? `${r.leader.name} (${r.leader.id}) at ${r.leader.grpcAddress}` : "none"],
          ["term", String(r.term)],
          ["since", since ?? "-"],
          [`this node (${r.nodeName})`, r.role],
          ...(format === "wide" ? [["voter config", `version ${r.configVersion}${r.configCommitted ? "" : " (not yet committed)"}`], ["acting", r.acting ? "yes" : "no"]] : []),
        ]));
        console.log();
        console.log(table([["VOTER", "ID", "STATE"], ...r.voters.map((v) => [v.name, v.id, v.state])]));
      } catch (err) {
        fail(err, agentAddress(g));
      } finally {
        client.close();
      }
    });
}
