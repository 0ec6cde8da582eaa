/**
 * `inference.GRPCInferenceService` on the runner: health, metadata and ModelInfer over the same models,
 * scheduler, metrics and logs as the REST app. ModelInfer converts the message to the V2 request REST takes
 * (to-inference-request.ts) and runs it through run-inference.ts, so both transports batch together and refuse the
 * same things; errors map to gRPC statuses through one table (grpc-status.ts).
 * @module
 */
import {
  type handleUnaryCall,
  Metadata,
  type ServerUnaryCall,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js'
import { AppError, REQUEST_ID_HEADER, requestIdFrom, toAppError } from '@twinserve/shared'
import type { ServedModel } from '../model/served-model.ts'
import { SERVER_EXTENSIONS, SERVER_NAME, SERVER_VERSION } from '../server/app.ts'
import type { AppDeps } from '../server/app-deps.ts'
import { errorFields } from '../server/logger.ts'
import { findModel } from '../server/model-lookup.ts'
import { runInference } from '../server/run-inference.ts'
import { toServiceError } from './grpc-status.ts'
import type {
  ModelInferRequest,
  ModelInferResponse,
  ModelMetadataResponse,
  ModelRequest,
  ServerMetadataResponse,
} from './messages.ts'
import type { RpcName } from './proto.ts'
import { toModelInferResponse } from './to-infer-response.ts'
import { toInferenceRequest } from './to-inference-request.ts'

/** What a handler gets besides the message. */
interface CallContext {
  requestId: string
  started: number
  call: ServerUnaryCall<unknown, unknown>
}

/** The model a request names, at the version it names ('' = the runner's choice). */
function modelAt(deps: AppDeps, name: string, version: string): ServedModel {
  const model = findModel(deps.models, name)
  const versions = model.metadata().versions ?? []
  if (version !== '' && !versions.includes(version))
    throw new AppError(
      'NOT_FOUND',
      versions.length === 0
        ? `model '${name}' has no version '${version}': models on this runner are unversioned (leave the version empty)`
        : `model '${name}' has no version '${version}'; versions: ${versions.join(', ')}`,
    )
  return model
}

/** The version a response names: the one asked for, else the model's own (empty when unversioned). */
function versionOf(model: ServedModel, asked: string): string {
  return asked || (model.metadata().versions?.[0] ?? '')
}

/** The caller's identity for merge quotas: the client certificate's subject under mTLS, else none. */
function tenantOf(call: ServerUnaryCall<unknown, unknown>): string {
  const cn = call.getAuthContext().sslPeerCertificate?.subject?.CN
  return cn ? `cert:${cn}` : ''
}

/** ms until the client's deadline, or undefined when it set none. */
function deadlineMsOf(
  call: ServerUnaryCall<unknown, unknown>,
  started: number,
): number | undefined {
  const deadline = call.getDeadline()
  const at = deadline instanceof Date ? deadline.getTime() : deadline
  if (!Number.isFinite(at)) return undefined
  return Math.max(1, at - Date.now() + (performance.now() - started))
}

function modelInfer(deps: AppDeps) {
  return async (msg: ModelInferRequest, ctx: CallContext): Promise<ModelInferResponse> => {
    const { call } = ctx
    const hungUp = new AbortController()
    if (call.cancelled) hungUp.abort()
    else call.once('cancelled', () => hungUp.abort())
    let version = ''
    const res = await runInference(
      deps,
      {
        requestId: ctx.requestId,
        tenant: tenantOf(call),
        started: ctx.started,
        signal: hungUp.signal,
        logFields: { protocol: 'grpc' },
      },
      {
        modelName: msg.model_name,
        model: () => modelAt(deps, msg.model_name, msg.model_version),
        decode: (model) => {
          version = versionOf(model, msg.model_version)
          const deadlineMs = deadlineMsOf(call, ctx.started)
          return {
            req: toInferenceRequest(msg),
            ...(deadlineMs === undefined ? {} : { deadlineMs }),
          }
        },
      },
    )
    return toModelInferResponse(res, version)
  }
}

/** One handler per RPC; each takes its own message type (`never` lets them share one record). */
function handlers(
  deps: AppDeps,
): Record<RpcName, (msg: never, ctx: CallContext) => Promise<unknown> | unknown> {
  return {
    ServerLive: () => ({ live: true }),
    ServerReady: () => ({ ready: deps.ready() }),
    ServerMetadata: (): ServerMetadataResponse => ({
      name: SERVER_NAME,
      version: SERVER_VERSION,
      extensions: [...SERVER_EXTENSIONS],
    }),
    ModelReady: (msg: ModelRequest) => {
      modelAt(deps, msg.name, msg.version)
      return { ready: deps.ready() }
    },
    ModelMetadata: (msg: ModelRequest): ModelMetadataResponse => {
      const m = modelAt(deps, msg.name, msg.version).metadata()
      return {
        name: m.name,
        versions: m.versions ?? [],
        platform: m.platform,
        inputs: m.inputs,
        outputs: m.outputs,
      }
    },
    ModelInfer: modelInfer(deps),
  }
}

/**
 * The service implementation for grpc-js's `server.addService(inferenceService(), …)`. Every call gets a request
 * id (the caller's `x-request-id` metadata when tame), sent back in the initial metadata and in every error.
 */
export function inferenceServiceImplementation(deps: AppDeps): UntypedServiceImplementation {
  const quiet: ReadonlySet<RpcName> = new Set(['ServerLive', 'ServerReady'])
  const impl: UntypedServiceImplementation = {}
  for (const [rpc, handle] of Object.entries(handlers(deps)) as [
    RpcName,
    (msg: unknown, ctx: CallContext) => unknown,
  ][]) {
    const unary: handleUnaryCall<unknown, unknown> = (call, callback) => {
      const started = performance.now()
      const given = call.metadata.get(REQUEST_ID_HEADER)[0]
      const requestId = requestIdFrom(typeof given === 'string' ? given : undefined)
      const head = new Metadata()
      head.set(REQUEST_ID_HEADER, requestId)
      call.sendMetadata(head)
      const log = (code: string) => {
        // ModelInfer logs its own line (run-inference.ts).
        if (rpc === 'ModelInfer') return
        const fields = {
          request_id: requestId,
          protocol: 'grpc',
          rpc,
          code,
          duration_ms: Math.round((performance.now() - started) * 1000) / 1000,
        }
        if (quiet.has(rpc)) deps.logger.debug('request', fields)
        else deps.logger.info('request', fields)
      }
      Promise.resolve()
        .then(() => handle(call.request, { requestId, started, call }))
        .then(
          (response) => {
            log('OK')
            callback(null, response)
          },
          (err: unknown) => {
            const e = toAppError(err)
            if (rpc !== 'ModelInfer' && (e.code === 'INTERNAL' || e.code === 'MERGE_FAILED'))
              deps.logger.error('unexpected error', {
                request_id: requestId,
                rpc,
                ...errorFields(err),
              })
            log(e.code)
            callback(toServiceError(e, requestId), null)
          },
        )
    }
    impl[rpc] = unary
  }
  return impl
}
