/** Put/Get/DeleteBucketLifecycleConfiguration: the rules the lifecycle worker (objectstore/replica/lifecycle.ts) applies. */
import { readSmall } from "./body.js";
import { s3err } from "./errors.js";
import { body, ownBucket, sendEmpty, sendXml, type Ctx } from "./http.js";
import { lifecycleXml, parseLifecycle } from "./lifecycle-xml.js";

const MAX_XML = 2 << 20;

export async function putBucketLifecycle(ctx: Ctx) {
  await ownBucket(ctx);
  const rules = parseLifecycle((await readSmall(body(ctx), MAX_XML)).toString("utf8"));
  await ctx.store.putBucketConfig(ctx.bucket!, "lifecycle", rules);
  sendEmpty(ctx, 200);
}

export async function getBucketLifecycle(ctx: Ctx) {
  await ownBucket(ctx);
  const rules = await ctx.store.getBucketConfig(ctx.bucket!, "lifecycle");
  if (!rules?.length) throw s3err("NoSuchLifecycleConfiguration", undefined, { BucketName: ctx.bucket! });
  sendXml(ctx, 200, "LifecycleConfiguration", lifecycleXml(rules));
}

export async function deleteBucketLifecycle(ctx: Ctx) {
  await ownBucket(ctx);
  await ctx.store.putBucketConfig(ctx.bucket!, "lifecycle", undefined);
  sendEmpty(ctx, 204);
}
