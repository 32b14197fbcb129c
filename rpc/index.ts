/**
 * gRPC plumbing shared by every service: protobuf-es descriptors to grpc-js
 * definitions, typed handlers and clients, and the agent's server.
 */
export { serviceDefinition, serviceHandlers, requestBytes, toServiceError, type CallContext, type ServiceImpl, type ImplOf, type MethodImpl, type CallObserver, type CallHooks, type FinishedCall } from "./adapter.js";
export { groupId, processGroups } from "./local.js";
export { ROLES, CERT_ORG, NODE_OU, isRole, roleAtLeast, callerFromCertificate, describeCaller, type Role, type Caller } from "./identity.js";
export { createClient, type Client, type ClientOptions, type CallOptions, type OutgoingCall } from "./client.js";
export { pooledRandomBytes } from "./random.js";
export { RpcServer, tlsRequestingClientCert, type RpcServerOptions } from "./server.js";
export { status as GrpcStatus, Metadata, credentials, ServerCredentials, type ChannelCredentials } from "@grpc/grpc-js";
