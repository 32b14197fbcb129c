/** S3 access keys: the registry (CredentialLookup for SigV4) and KeyService. */
export { KeyRegistry, generatePair, ROOT_OWNER, type KeyInfo, type StoredKey, type KeyTable } from "./registry.js";
export { keyService } from "./service.js";
