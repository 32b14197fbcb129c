/**
 * The container subsystem: containers beside VMs, on a Docker-API engine
 * (engine/), placed by the scheduler like VMs (docs/containers.md).
 */
export type * from "./types.js";
export { ContainerImageStore, CONTAINER_IMAGE_BUCKET, canonicalImageName, imageEnsurer, type ContainerImageRecord, type EnsuredImage } from "./images.js";
export { containerImageHandlers, containerImageToPb } from "./images-rpc.js";
