/**
 * S3 request ids (x-amz-request-id): a per-process random prefix and a
 * counter, so ids are unique across restarts without a random draw per
 * request. Shared by the request pipeline and the malformed-HTTP answer.
 */
import { randomBytes } from "node:crypto";

let seq = 0;
const ridPrefix = randomBytes(4).toString("hex").toUpperCase();

export const newRequestId = (): string => ridPrefix + (++seq).toString(16).toUpperCase().padStart(8, "0");
