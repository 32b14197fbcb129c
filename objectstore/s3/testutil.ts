/**
 * The S3 test utilities: the fixture (test-fixture.ts) and s3Suite, the S3
 * protocol suites (objects, listings, multipart, bad input; suite-*.ts) as
 * one function, so each store the agent can run is held to all of them:
 * replica/dev-store-s3.test.ts runs them against the --dev store,
 * replica/blob-store-s3.test.ts against a 3-node cluster over gRPC.
 */
import { describe } from "node:test";
import { accessSuite } from "./suite-access.js";
import { accessGrantsSuite } from "./suite-access-grants.js";
import { badInputSuite } from "./suite-badinput.js";
import { conditionalSuite } from "./suite-conditional.js";
import { corsSuite } from "./suite-cors.js";
import { lifecycleSuite } from "./suite-lifecycle.js";
import { listSuite } from "./suite-list.js";
import { multipartSuite } from "./suite-multipart.js";
import { objectsSuite } from "./suite-objects.js";
import { taggingSuite } from "./suite-tagging.js";
import { versioningSuite } from "./suite-versioning.js";
import { sseSuite } from "./suite-sse.js";
import { ssePartsSuite } from "./suite-sse-parts.js";
import { postObjectSuite } from "./suite-post-object.js";
import type { MakeStore } from "./test-fixture.js";

export * from "./test-fixture.js";

/** Registers every S3 protocol suite against the stores makeStore makes (one per suite). */
export function s3Suite(name: string, makeStore: MakeStore): void {
  describe(name, () => {
    objectsSuite(makeStore);
    listSuite(makeStore);
    multipartSuite(makeStore);
    badInputSuite(makeStore);
    corsSuite(makeStore);
    conditionalSuite(makeStore);
    lifecycleSuite(makeStore);
    taggingSuite(makeStore);
    accessSuite(makeStore);
    accessGrantsSuite(makeStore);
    versioningSuite(makeStore);
    sseSuite(makeStore);
    ssePartsSuite(makeStore);
    postObjectSuite(makeStore);
  });
}
