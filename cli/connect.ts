/**
 * How the CLI reaches an agent: --addr HOST:PORT, else THOC_ADDR, else the
 * local agent on 127.0.0.1:7400. TLS when --tls-ca / THOC_TLS_CA names a CA
 * bundle; plaintext otherwise (agents only serve plaintext on loopback or --dev).
 *
 * The generated services and the gRPC client are loaded by connect(), when a
 * command runs, not when its module is: `--help` and `keygen` never pay for them.
 */
import { readFileSync } from "node:fs";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import type { Command } from "commander";
import type { Client } from "../rpc/index.js";

type Proto = typeof import("../proto/index.js");

export interface GlobalOpts { addr?: string; tlsCa?: string; tlsCert?: string; tlsKey?: string; timeout?: string }

export function globalOpts(cmd: Command): GlobalOpts {
  return cmd.optsWithGlobals() as GlobalOpts;
}

export function agentAddress(o: GlobalOpts): string {
  return o.addr ?? process.env.THOC_ADDR ?? "127.0.0.1:7400";
}

/** A client of the service `pick` names, e.g. connect((p) => p.NodeService, g). */
export async function connect<T extends GenServiceMethods>(pick: (proto: Proto) => GenService<T>, o: GlobalOpts): Promise<Client<T>> {
  const [proto, { createClient, credentials }] = await Promise.all([import("../proto/index.js"), import("../rpc/index.js")]);
  const ca = o.tlsCa ?? process.env.THOC_TLS_CA;
  // An operator certificate (thoc-node cert issue, or pki/admin.crt from cluster init) says who calls.
  const cert = o.tlsCert ?? process.env.THOC_TLS_CERT;
  const key = o.tlsKey ?? process.env.THOC_TLS_KEY;
  if (Boolean(cert) !== Boolean(key)) throw new Error("--tls-cert and --tls-key (THOC_TLS_CERT, THOC_TLS_KEY) go together");
  const timeout = Number(o.timeout ?? 10_000);
  return createClient(pick(proto), agentAddress(o), {
    credentials: ca ? credentials.createSsl(readFileSync(ca), key ? readFileSync(key) : null, cert ? readFileSync(cert) : null) : credentials.createInsecure(),
    defaultTimeoutMs: timeout,
  });
}
