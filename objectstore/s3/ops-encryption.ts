/** Bucket default encryption: PutBucketEncryption, GetBucketEncryption, DeleteBucketEncryption (SSE-S3 only; sse.ts applies it to writes). */
import { readSmall } from "./body.js";
import { s3err } from "./errors.js";
import { body, ownBucket, sendEmpty, sendXml, type Ctx } from "./http.js";
import { list, parseXml, text } from "./xml.js";

const MAX_XML = 64 << 10;

export async function putBucketEncryption(ctx: Ctx) {
  await ownBucket(ctx);
  const doc = parseXml((await readSmall(body(ctx), MAX_XML)).toString("utf8"), "ServerSideEncryptionConfiguration");
  const rules = list(doc, "Rule");
  if (rules.length !== 1) throw s3err("MalformedXML", "A ServerSideEncryptionConfiguration holds exactly one <Rule>.");
  const byDefault = list(rules[0], "ApplyServerSideEncryptionByDefault")[0];
  const alg = text(byDefault, "SSEAlgorithm")?.trim();
  if (alg === "aws:kms" || alg === "aws:kms:dsse") throw s3err("NotImplemented", "SSE-KMS (aws:kms) is not supported by this store: use SSEAlgorithm AES256.");
  if (alg !== "AES256") throw s3err("MalformedXML", "<ApplyServerSideEncryptionByDefault> needs <SSEAlgorithm>AES256</SSEAlgorithm>.");
  if (text(byDefault, "KMSMasterKeyID") !== undefined) throw s3err("InvalidArgument", "a KMSMasterKeyID is only valid with SSEAlgorithm aws:kms.", { ArgumentName: "KMSMasterKeyID" });
  await ctx.store.putBucketConfig(ctx.bucket!, "encryption", { algorithm: "AES256" });
  sendEmpty(ctx, 200);
}

export async function getBucketEncryption(ctx: Ctx) {
  await ownBucket(ctx);
  const c = await ctx.store.getBucketConfig(ctx.bucket!, "encryption");
  if (!c) throw s3err("ServerSideEncryptionConfigurationNotFoundError", undefined, { BucketName: ctx.bucket! });
  sendXml(ctx, 200, "ServerSideEncryptionConfiguration", {
    Rule: { ApplyServerSideEncryptionByDefault: { SSEAlgorithm: c.algorithm }, BucketKeyEnabled: false },
  });
}

export async function deleteBucketEncryption(ctx: Ctx) {
  await ownBucket(ctx);
  await ctx.store.putBucketConfig(ctx.bucket!, "encryption", undefined);
  sendEmpty(ctx, 204);
}
