/**
 * The subsystems every agent runs, in start order. Each lives in its own
 * folder and is imported through that folder's index.ts.
 */
import type { Config } from "../config/index.js";
import type { Subsystem } from "./subsystem.js";
import { MembershipSubsystem } from "../membership/index.js";
import { VmSubsystem } from "../vm/index.js";
import { ObjectStoreSubsystem } from "../objectstore/index.js";

export function defaultSubsystems(_config: Config): Subsystem[] {
  return [new MembershipSubsystem(), new ObjectStoreSubsystem(), new VmSubsystem()];
}
