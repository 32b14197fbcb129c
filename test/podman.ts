/** Real podman for multi-agent tests and benchmarks (engine/'s test face, re-exported for bench/). */
export { buildBusyboxImage, podmanEngineUri, ensurePodmanService } from "../engine/testutil.js";
