/**
 * KServe's gRPC inference service on the runner (`@twinserve/gpu-runner/grpc`): the listener, the service, and
 * the message conversions, which tools and tests that speak the protocol share.
 * @module
 */

export { type GrpcServer, type GrpcTlsFiles, startGrpcServer } from './grpc-server.ts'
export { GRPC_STATUS_OF, toServiceError } from './grpc-status.ts'
export { decodeParameters, encodeParameters, JSON_PARAMETER_KEYS } from './infer-parameters.ts'
export { inferenceServiceImplementation } from './inference-service.ts'
export type * from './messages.ts'
export { inferenceService, PROTO_PATH, RPC_NAMES, SERVICE_NAME } from './proto.ts'
export { decodeRaw, encodeRaw } from './raw-tensors.ts'
export { toModelInferResponse } from './to-infer-response.ts'
export { toInferenceRequest } from './to-inference-request.ts'
