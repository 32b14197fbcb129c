/**
 * VMs through libvirt: VmManager (lifecycle, reconcile), domain XML, images,
 * qcow2 overlays, cloud-init seed ISOs, bridge-vlan networking, GPUs,
 * admission (the pure fit() the scheduler shares),
 * snapshots, console, logs, metrics; VmService/ImageService; the "vm" subsystem.
 */
export { VmSubsystem, type VmDeps } from "./subsystem.js";
export { VmManager, stateToStatus, type VmRecord, type VmStatus, type ManagerOptions, type RecordStore, type VmChange, type VmTrigger } from "./manager.js";
export { validateSpec, prefixOf, type VmSpec, type VmSpecInput, type NetworkSpec, type GpuSpec, type CloudInitSpec, type HostLimits } from "./spec.js";
export { domainXml, domainName, parseThocMetadata, DOMAIN_PREFIX, THOC_NS, type DomainXmlInput } from "./xml.js";
export { ObjectImageStore, IMAGE_BUCKET, IMAGE_OWNER } from "./images-objectstore.js";
export { LocalImageStore, checkImageName, type ImageStore, type ImageRecord, type ImagePart, type ImageWriter } from "./images.js";
export { fit, fitError, withinBudget, usageOf, budgetOf, type FitRequest, type FitResult, type FitRefusal, type FitResource, type Reservation, type NodeCapacity, type Usage } from "./fit.js";
export { parseGpus, allocateGpus, MIG_PROFILES, type HostGpu, type GpuAllocation } from "./gpu.js";
export { buildSeedIso, userData, metaData, hashPassword } from "./cloudinit.js";
export { networkConfig, vlanCommands, bridgeFor, tapName, macFor } from "./network.js";
export { createSnapshot, listSnapshots, restoreSnapshot, deleteSnapshot, openConsole, readLog, vmMetrics } from "./ops.js";
export { vmService, imageService, specFromPb, vmToPb } from "./rpc.js";
export { VncTokens } from "./vnc.js";
export { createVncProxy, encodeFrame, decodeFrames, vncPort } from "./vnc-proxy.js";
