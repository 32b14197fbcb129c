/**
 * What the S3-over-HTTPS client tests (s3-tls, s3-sse-clients) share: one real
 * agent serving S3 over HTTPS (s3.tls.certFile / keyFile) with a test CA and
 * a certificate for its loopback IP, and the clean CLI environment of
 * s3-cli.ts with these keys and that endpoint.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { makeTestCertificates, type TestCertificates } from "../core/testutil.js";
import { type AgentProcess, Cluster, loopbackBlock } from "./harness.js";
import { S3_ENV } from "./objectstore-util.js";
import { cliEnv } from "./s3-cli.js";

export const REGION = "us-east-1";

export interface TlsAgent {
  /** The temp dir (files of the test go here too); removed by stop(). */
  root: string;
  agent: AgentProcess;
  certs: TestCertificates;
  /** https://<agent's address>:7480 */
  endpoint: string;
  /** The CLIs' environment (s3-cli.ts cliEnv: our keys, no user config, rclone remote `t:`), plus `extra`. */
  env(extra?: NodeJS.ProcessEnv): NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

/** Starts the agent in a fresh temp dir named `prefix`...; on a failed start, stops what started and removes the dir. */
export async function startTlsAgent(prefix: string): Promise<TlsAgent> {
  const root = await mkdtemp(path.join(tmpdir(), prefix));
  let cluster: Cluster | undefined;
  const stop = async () => {
    await cluster?.stop();
    await rm(root, { recursive: true, force: true });
  };
  try {
    const block = loopbackBlock();
    const certs = makeTestCertificates(root, [`${block}.2`]);
    cluster = new Cluster(path.join(root, "c"), block, { env: { ...S3_ENV, THOC_S3_TLS_CERT_FILE: certs.certFile, THOC_S3_TLS_KEY_FILE: certs.keyFile } });
    const agent = cluster.add();
    await agent.start();
    const endpoint = `https://${agent.bind}:7480`;
    const env = (extra: NodeJS.ProcessEnv = {}) => ({ ...cliEnv(endpoint, S3_ENV.THOC_S3_ACCESS_KEY, S3_ENV.THOC_S3_SECRET_KEY, REGION), ...extra });
    return { root, agent, certs, endpoint, env, stop };
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
}
