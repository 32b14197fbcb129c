/**
 * Generated protobuf-es code for thoc.node.v1 (regenerate with `npm run proto`).
 */
export * from "./gen/thoc/node/v1/node_pb.js";
