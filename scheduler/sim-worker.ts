/**
 * Worker-thread entry for simulation sweeps (scenarios.ts's sweepInWorker):
 * runs one sweep and posts its per-seed results back.
 */
import { parentPort, workerData } from "node:worker_threads";
import { runSweep, type SweepJob } from "./scenarios.js";

parentPort!.postMessage(await runSweep(workerData as SweepJob));
