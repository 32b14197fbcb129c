/**
 * The keys SSE-S3's master keys come from (objectstore/s3/sse-keys.ts): the
 * cluster key ring (cluster.keys). Under --dev without cluster.keys of its
 * own, the ring is the well-known dev key (config DEV_CLUSTER_KEY), which is
 * printed in the source: encrypting with it would protect nothing, so this
 * node uses a random key generated at its first start and kept in its local
 * metadata store (<dataDir>/meta) instead. It lies on the same disk as the
 * data, so a dev node's disk is not protected either; what it gives is that
 * SSE-S3 behaves as in production (objects are ciphertext on disk, keys are
 * wrapped) with nothing to configure. Objects written so can be read only by
 * that data dir's agent.
 */
import { randomBytes } from "node:crypto";
import { DEV_CLUSTER_KEY, type Config } from "../config/index.js";
import type { LocalStore } from "../store/index.js";

const DEV_KEY = "objectstore/sse-dev-key";

export async function sseKeys(config: Config, local: LocalStore): Promise<string[]> {
  const keys = config.cluster.keys;
  if (!config.dev || keys.some((k) => k !== DEV_CLUSTER_KEY)) return [...keys];
  let key = await local.db.get(DEV_KEY);
  if (!key) {
    key = randomBytes(32).toString("base64");
    await local.db.put(DEV_KEY, key, { sync: true });
  }
  return [key];
}
