/**
 * The agent: lifecycle, admin HTTP, metrics, NodeService, capacity
 * readings, and what it tells systemd (readiness, status, watchdog). Which subsystems it runs, in which order and wired how, is the
 * composition root (agent/root.ts), loaded only by `thoc-node agent`.
 */
export { Agent, type AgentHooks } from "./agent.js";
export { readCapacity } from "./capacity.js";
export { createSubsystems } from "./root.js";
export { exitBounded, exitDeadline } from "./exit.js";
export { connectSystemd, type Systemd } from "./systemd.js";
