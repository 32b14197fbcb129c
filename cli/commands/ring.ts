import type { Command } from "commander";
import { agentAddress, connect, globalOpts } from "../connect.js";
import { fail, outputFormat, outputOptions, printJson, table } from "../output.js";

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const size = (n: bigint) => {
  const v = Number(n);
  return v >= 1 << 30 ? `${(v / 2 ** 30).toFixed(1)} GiB` : v >= 1 << 20 ? `${(v / 2 ** 20).toFixed(1)} MiB` : v >= 1024 ? `${(v / 1024).toFixed(1)} KiB` : `${v} B`;
};

export function registerRing(program: Command): void {
  outputOptions(program
    .command("ring")
    .description("show the object store's hash ring: each node's share of the key space, its state, the effective N/W/R and the data still to move"),
  "print one JSON document: {nodes:[{id,name,weight,share,replicaShare,state,grpcAddress}], replicas, writeQuorum, readQuorum, balance, misplacedReplicas, misplacedBytes, pendingHints}")
    .action(async (opts: { output?: string; json?: boolean }, cmd: Command) => {
      const format = outputFormat(opts);
      const g = globalOpts(cmd);
      const client = await connect((p) => p.ClusterService, g);
      try {
        const r = await client.getRing({});
        if (format === "json") {
          printJson({
            localId: r.localId,
            nodes: r.nodes.map((n) => ({ id: n.id, name: n.name, weight: n.weight, share: n.share, replicaShare: n.replicaShare, state: n.state, grpcAddress: n.grpcAddress })),
            replicas: r.replicas, writeQuorum: r.writeQuorum, readQuorum: r.readQuorum,
            configured: { replicas: r.configuredReplicas, writeQuorum: r.configuredWriteQuorum, readQuorum: r.configuredReadQuorum },
            balance: { min: r.balanceMin, max: r.balanceMax },
            misplacedReplicas: Number(r.misplacedReplicas), misplacedBytes: Number(r.misplacedBytes), pendingHints: Number(r.pendingHints),
            digest: r.digest,
          });
          return;
        }
        console.log(table([
          ["NAME", "ID", "STATE", "WEIGHT", "SHARE", "REPLICA SHARE", "GRPC"],
          ...r.nodes.map((n) => [n.name + (n.id === r.localId ? " *" : ""), n.id, n.state, n.weight.toFixed(2), n.state === "removed" ? "-" : pct(n.share), n.state === "removed" ? "-" : pct(n.replicaShare), n.grpcAddress]),
        ]));
        const lowered = r.replicas < r.configuredReplicas || r.writeQuorum < r.configuredWriteQuorum || r.readQuorum < r.configuredReadQuorum;
        console.log(`\nN/W/R ${r.replicas}/${r.writeQuorum}/${r.readQuorum}${lowered ? ` (configured ${r.configuredReplicas}/${r.configuredWriteQuorum}/${r.configuredReadQuorum}; lowered: the ring has fewer nodes)` : ""}`);
        console.log(`balance: each node holds ${r.balanceMin.toFixed(2)}–${r.balanceMax.toFixed(2)}× its fair share (by weight)`);
        // Every column is in the table already; wide adds the ring's digest (equal on nodes that agree on the ring).
        if (format === "wide") console.log(`ring digest: ${r.digest}`);
        console.log(`this node: ${r.misplacedReplicas} replicas (${size(r.misplacedBytes)}) still to move to their new owners, ${r.pendingHints} hints waiting for down nodes`);
      } catch (err) {
        fail(err, agentAddress(g));
      } finally {
        client.close();
      }
    });

  const node = program.command("node").description("operator actions on cluster nodes");
  node
    .command("remove")
    .argument("<node>", "node name or id, as `thoc-node ring` shows it")
    .description("take a node out of the cluster for good (a node that is only down keeps its place): out of the object store's ring (its data is re-replicated to the new owners in the background) and out of the scheduler's voters (the leader gives the seat to another live node)")
    .option("--json", "print one JSON document: {id, name, removed}")
    .action(async (name: string, opts: { json?: boolean }, cmd: Command) => {
      const g = globalOpts(cmd);
      const client = await connect((p) => p.ClusterService, g);
      try {
        const r = await client.removeNode({ node: name });
        if (opts.json) printJson({ id: r.id, name: r.name, removed: r.removed });
        else console.log(r.removed ? `removed ${r.name} (${r.id}) from the ring; its data moves to the new owners in the background (watch \`thoc-node ring\`)` : `${r.name} (${r.id}) was already removed`);
      } catch (err) {
        fail(err, agentAddress(g));
      } finally {
        client.close();
      }
    });
}
