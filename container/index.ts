/**
 * The container subsystem: containers beside VMs, on a Docker-API engine
 * (engine/), placed by the scheduler like VMs (docs/containers.md).
 */
export type * from "./types.js";
export { ContainerSubsystem, type ContainerDeps } from "./subsystem.js";
export { ContainerManager, type ContainerManagerOptions, type VmLedger, type EnsureImage } from "./manager.js";
export { ENGINE_PREFIX, LABEL, MIN_CPUS, MIN_MEMORY_MB, reservationOf, statusOf, type ContainerRecordStore } from "./record.js";
export {
  validateContainerSpec, specFromPb, createOptionsFromPb, envOf, volumesOf, modelMount, HEALTH_DEFAULTS, MODEL_ENV, CONTAINER_NAME_RE, VOLUME_NAME_RE,
  type ContainerSpecInput, type HealthDefaults,
} from "./spec.js";
export { containerToPb, specToPb, statsToPb } from "./pb.js";
export { containerService, disabledContainerService, runtimeInfo, type ContainerImageHandlers, type ContainerServiceOptions } from "./rpc.js";
export { containerEvent } from "./events.js";
export { registerContainerMetrics } from "./metrics.js";
export { HealthPoller, httpProbe, type HealthProbe, type HealthTarget } from "./health.js";
export { backoffMs, shouldRestart, BACKOFF, type BackoffOptions } from "./restart.js";
export { Volumes } from "./volumes.js";
export { gpuDevices } from "./gpus.js";
export { ContainerImageStore, CONTAINER_IMAGE_BUCKET, canonicalImageName, imageEnsurer, type ContainerImageRecord, type EnsuredImage } from "./images.js";
export { containerImageHandlers, containerImageToPb } from "./images-rpc.js";
