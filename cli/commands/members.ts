import type { Command } from "commander";
import { agentAddress, connect, globalOpts } from "../connect.js";
import { bytes, fail, outputFormat, outputOptions, printJson, table } from "../output.js";

export function registerMembers(program: Command): void {
  outputOptions(program
    .command("members")
    .description("show the cluster as this node's gossip view sees it: every member, its state and incarnation"),
  "print one JSON document: an array of {id, name, address, state, incarnation, meta}")
    .action(async (opts: { output?: string; json?: boolean }, cmd: Command) => {
      const format = outputFormat(opts);
      const g = globalOpts(cmd);
      const client = await connect((p) => p.ClusterService, g);
      try {
        const { members, localId } = await client.listMembers({});
        if (format === "json") {
          printJson(members.map((m) => {
            const { $typeName: _t, ...meta } = m.meta ?? ({} as never);
            return { id: m.id, name: m.name, address: m.address, state: m.state, incarnation: m.incarnation, meta, stateChangedAtMs: m.stateChangedAtMs };
          }));
          return;
        }
        const wide = format === "wide";
        console.log(table([
          ["NAME", "ID", "ADDRESS", "STATE", "INC", "GRPC", "VERSION", ...(wide ? ["S3", "CPUS", "MEMORY FREE", "DISK FREE", "GPUS", "SINCE"] : [])],
          ...members.map((m) => [m.name + (m.id === localId ? " *" : ""), m.id, m.address, m.state, String(m.incarnation), m.meta?.grpcAddress ?? "", m.meta?.version ?? "",
            ...(wide ? [m.meta?.s3Address || "-", String(m.meta?.cpus ?? 0), `${bytes(m.meta?.memoryFreeBytes ?? 0n)} of ${bytes(m.meta?.memoryBytes ?? 0n)}`,
              `${bytes(m.meta?.diskFreeBytes ?? 0n)} of ${bytes(m.meta?.diskBytes ?? 0n)}`, String(m.meta?.gpus ?? 0), m.stateChangedAtMs ? new Date(Number(m.stateChangedAtMs)).toISOString() : "-"] : [])]),
        ]));
      } catch (err) {
        fail(err, agentAddress(g));
      } finally {
        client.close();
      }
    });
}
