/**
 * Generated protobuf-es code for thoc.node.v1 (regenerate with `npm run proto`).
 */
export * from "./gen/thoc/node/v1/node_pb.js";
export * from "./gen/thoc/node/v1/vm_pb.js";
export * from "./gen/thoc/node/v1/image_pb.js";
export * from "./gen/thoc/node/v1/cluster_pb.js";
export * from "./gen/thoc/node/v1/keys_pb.js";
export * from "./gen/thoc/node/v1/objectstore_pb.js";
export * from "./gen/thoc/node/v1/pki_pb.js";
export * from "./gen/thoc/node/v1/events_pb.js";
export * from "./gen/thoc/node/v1/scheduler_pb.js";
export * from "./gen/thoc/node/v1/container_pb.js";
