/**
 * How long a conditional write waits for its key's lock (conditional.ts; the
 * lock itself is a KeyLocker, objectstore/blob/key-lock.ts): its own file so
 * that http.ts and conditional.ts do not import each other.
 */

/** How long a conditional write waits for an earlier one of the same key (tests shorten it). */
export const conditionalTiming = { lockWaitMs: 30_000 };
