import type { Command } from "commander";
import { agentAddress, connect, globalOpts } from "../connect.js";
import { fail, printJson, table } from "../output.js";

export function registerMembers(program: Command): void {
  program
    .command("members")
    .description("show the cluster as this node's gossip view sees it: every member, its state and incarnation")
    .option("--json", "print one JSON document: an array of {id, name, address, state, incarnation, meta}")
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const g = globalOpts(cmd);
      const client = await connect((p) => p.ClusterService, g);
      try {
        const { members, localId } = await client.listMembers({});
        if (opts.json) {
          printJson(members.map((m) => {
            const { $typeName: _t, ...meta } = m.meta ?? ({} as never);
            return { id: m.id, name: m.name, address: m.address, state: m.state, incarnation: m.incarnation, meta, stateChangedAtMs: m.stateChangedAtMs };
          }));
          return;
        }
        console.log(table([
          ["NAME", "ID", "ADDRESS", "STATE", "INC", "GRPC", "VERSION"],
          ...members.map((m) => [m.name + (m.id === localId ? " *" : ""), m.id, m.address, m.state, String(m.incarnation), m.meta?.grpcAddress ?? "", m.meta?.version ?? ""]),
        ]));
      } catch (err) {
        fail(err, agentAddress(g));
      } finally {
        client.close();
      }
    });
}
