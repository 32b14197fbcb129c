import type { Command } from "commander";
import { agentAddress, connect, globalOpts } from "../connect.js";
import { bytes, fail, outputFormat, outputOptions, printJson, table } from "../output.js";

export function registerStatus(program: Command): void {
  outputOptions(program
    .command("status")
    .description("show this node: identity, addresses, capacity and the health of each subsystem"))
    .action(async (opts: { output?: string; json?: boolean }, cmd: Command) => {
      const format = outputFormat(opts);
      const g = globalOpts(cmd);
      const client = await connect((p) => p.NodeService, g);
      try {
        const { node } = await client.getNode({});
        if (!node) throw new Error("agent returned no node");
        if (format === "json") {
          const { $typeName: _t, capacity, subsystems, ...rest } = node;
          const { $typeName: _c, gpus, ...cap } = capacity ?? ({ gpus: [] } as never);
          printJson({
            ...rest,
            capacity: { ...cap, gpus: (gpus ?? []).map(({ $typeName: _g, ...x }) => x) },
            subsystems: Object.fromEntries(subsystems.map((s) => [s.name, { status: s.status, detail: s.detail || undefined }])),
          });
          return;
        }
        const c = node.capacity;
        console.log(table([
          ["name", node.name], ["id", node.id], ["version", node.version],
          ["ready", node.ready ? "yes" : "no"],
          ["grpc", node.grpcAddress], ["s3", node.s3Address], ["admin", node.httpAddress], ["gossip", node.gossipAddress],
          ["cpus", c ? `${c.cpus} (${c.cpuModel})` : "?"],
          ["memory", c ? `${bytes(c.memoryBytes)} (${bytes(c.memoryFreeBytes)} free)` : "?"],
          ["disk", c ? `${bytes(c.diskBytes)} (${bytes(c.diskFreeBytes)} free) at ${node.dataDir}` : "?"],
          ["gpus", c?.gpus.length ? c.gpus.map((x) => `${x.model} ${x.pciAddress}`).join(", ") : "none"],
          ["hypervisor", node.hypervisorUri],
          ["uptime", `${node.uptimeSeconds.toFixed(0)} s`],
          ...(format === "wide" ? [["dev", node.dev ? "yes" : "no"], ["started", new Date(Number(node.startedAtMs)).toISOString()]] : []),
          ...node.subsystems.map((s) => [`  ${s.name}`, `${s.status}${s.detail ? ` (${s.detail})` : ""}`]),
        ]));
      } catch (err) {
        fail(err, agentAddress(g));
      } finally {
        client.close();
      }
    });
}
