/**
 * The subsystems every agent runs, in start order. Each lives in its own
 * folder and is imported through that folder's index.ts.
 */
import type { Config } from "../config/index.js";
import type { Subsystem } from "./subsystem.js";

export function defaultSubsystems(_config: Config): Subsystem[] {
  return [];
}
