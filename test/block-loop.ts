/**
 * Preloaded into an agent by a test (NODE_OPTIONS=--import=<this file>), never
 * part of the product: on SIGUSR2 the main thread busy-waits for
 * THOC_TEST_BLOCK_MS (default 3000) ms, the blocked event loop a runaway
 * computation or a synchronous call would cause. A signal, so only a local
 * process allowed to signal the agent can trigger it, and only in an agent a
 * test started with this file.
 */
const ms = Number(process.env.THOC_TEST_BLOCK_MS ?? 3000);
process.on("SIGUSR2", () => {
  const end = Date.now() + ms;
  while (Date.now() < end) { /* the event loop runs nothing meanwhile */ }
});
