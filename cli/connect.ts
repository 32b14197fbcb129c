/**
 * How the CLI reaches an agent: --addr HOST:PORT, else THOC_ADDR, else the
 * local agent on 127.0.0.1:7400. TLS when --tls-ca / THOC_TLS_CA names a CA
 * bundle; plaintext otherwise (agents only serve plaintext on loopback or --dev).
 */
import { readFileSync } from "node:fs";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import type { Command } from "commander";
import { createClient, credentials, type Client } from "../rpc/index.js";

export interface GlobalOpts { addr?: string; tlsCa?: string; timeout?: string }

export function globalOpts(cmd: Command): GlobalOpts {
  return cmd.optsWithGlobals() as GlobalOpts;
}

export function agentAddress(o: GlobalOpts): string {
  return o.addr ?? process.env.THOC_ADDR ?? "127.0.0.1:7400";
}

export function connect<T extends GenServiceMethods>(svc: GenService<T>, o: GlobalOpts): Client<T> {
  const ca = o.tlsCa ?? process.env.THOC_TLS_CA;
  const timeout = Number(o.timeout ?? 10_000);
  return createClient(svc, agentAddress(o), {
    credentials: ca ? credentials.createSsl(readFileSync(ca)) : credentials.createInsecure(),
    defaultTimeoutMs: timeout,
  });
}
