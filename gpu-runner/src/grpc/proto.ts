/**
 * KServe's `inference.GRPCInferenceService` (grpc_predict_v2.proto, beside this file), loaded at start with
 * proto-loader: the service definition grpc-js serves, and the same definition's (de)serializers for tests and
 * tools that speak it.
 * @module
 */
import { join } from 'node:path'
import type { ServiceDefinition } from '@grpc/grpc-js'
import { loadSync } from '@grpc/proto-loader'

export const PROTO_PATH = join(import.meta.dirname, 'grpc_predict_v2.proto')
export const SERVICE_NAME = 'inference.GRPCInferenceService'

/** The RPCs the runner implements (the proto's RepositoryModelLoad/Unload answer UNIMPLEMENTED). */
export const RPC_NAMES = [
  'ServerLive',
  'ServerReady',
  'ServerMetadata',
  'ModelReady',
  'ModelMetadata',
  'ModelInfer',
] as const
export type RpcName = (typeof RPC_NAMES)[number]

let loaded: ServiceDefinition | undefined

/**
 * The service definition (method paths, serializers). Field names stay as in the proto (`model_name`), 64-bit
 * integers arrive as decimal strings so that none is rounded on the way in, and absent fields get their defaults
 * (`[]`, `''`, null for messages), which is how proto3 tells "absent" from "empty" anyway: it cannot.
 */
export function inferenceService(): ServiceDefinition {
  loaded ??= (() => {
    const definition = loadSync(PROTO_PATH, {
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    })
    const service = definition[SERVICE_NAME]
    // A message or enum definition carries `format`; a service is a map of method definitions.
    if (!service || 'format' in service || !('ModelInfer' in service))
      throw new Error(`${PROTO_PATH} does not define ${SERVICE_NAME}`)
    return service as ServiceDefinition
  })()
  return loaded
}
