/**
 * The agent's configuration: one schema (schema.ts) with every option, its
 * default and a one-line reason; `lan` and `local` presets; YAML file <
 * THOC_* env < flags. See docs/configuration.md.
 */
export { schema, type Schema } from "./schema.js";
export {
  loadConfig, configError, listOptions, envName, redacted, isLoopback, hostPort,
  DEV_CLUSTER_KEY, DEFAULT_CONFIG_FILE, type Config, type LoadOptions,
} from "./resolve.js";
export { readConfigFile, readKeyFile } from "./files.js";
export { formatDuration, presetDefault, type Opt, type Preset } from "./types.js";
