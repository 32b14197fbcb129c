/** Node-local durable state: LevelDB under the data dir, node id, data-dir lock. */
export { LocalStore, makeDirs } from "./local.js";
