/**
 * The agent's gRPC transport: the cluster PKI (cluster init / token join),
 * the operator's tls.* files, or plaintext on loopback and --dev. The logic is
 * cluster/'s NodeTransport; the agent opens it after the store (the node id
 * is the certificate's name) and before the subsystems (they dial peers with it).
 */
import { NodeTransport, type NodeTransportOptions } from "../cluster/index.js";

export type { NodeTransport };

export async function openTransport(o: NodeTransportOptions): Promise<NodeTransport> {
  const t = await NodeTransport.open(o);
  o.log.info({ mode: t.mode }, t.mode === "pki" ? "gRPC: TLS from the cluster PKI (mutual TLS between nodes)" : t.mode === "files" ? "gRPC: TLS from tls.* files" : "gRPC: plaintext");
  return t;
}
