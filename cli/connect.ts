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

export interface GlobalOpts { addr?: string; tlsCa?: string; timeout?: string }

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
  const timeout = Number(o.timeout ?? 10_000);
  return createClient(pick(proto), agentAddress(o), {
    credentials: ca ? credentials.createSsl(readFileSync(ca)) : credentials.createInsecure(),
    defaultTimeoutMs: timeout,
  });
}
