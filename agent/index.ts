/**
 * The agent: lifecycle, admin HTTP, metrics, NodeService and capacity
 * readings. Which subsystems it runs, in which order and wired how, is the
 * composition root (agent/root.ts), loaded only by `thoc-node agent`.
 */
export { Agent } from "./agent.js";
export { readCapacity } from "./capacity.js";
export { createSubsystems } from "./root.js";
export { exitBounded, exitDeadline } from "./exit.js";
