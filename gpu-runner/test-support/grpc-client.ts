/**
 * A gRPC client for tests of the runner's inference service: a real @grpc/grpc-js channel that sends either a
 * message (serialised with the runner's own proto) or exact recorded bytes (the captured client fixtures), and
 * hands back the decoded answer, or the status it failed with.
 * @module
 */
import {
  type CallOptions,
  type ChannelCredentials,
  Client,
  credentials,
  Metadata,
  type ServiceError,
} from '@grpc/grpc-js'
import { inferenceService, type RpcName } from '../src/grpc/proto.ts'

export interface GrpcAnswer<T> {
  /** Null when the call failed. */
  response: T | null
  error: ServiceError | null
  /** Initial metadata the server sent (the request id). */
  headers: Metadata | null
}

export class InferenceTestClient {
  private readonly client: Client

  constructor(address: string, creds: ChannelCredentials = credentials.createInsecure()) {
    this.client = new Client(address, creds)
  }

  /** Calls `rpc` with a message, serialised by the proto. */
  call<T = Record<string, unknown>>(
    rpc: RpcName,
    message: object,
    opts: { metadata?: Metadata; deadlineMs?: number } = {},
  ): Promise<GrpcAnswer<T>> {
    const method = inferenceService()[rpc]
    if (!method) throw new Error(`no method ${rpc}`)
    return this.send(rpc, method.requestSerialize(message), opts)
  }

  /** Calls `rpc` with exactly these message bytes (a recorded request), as the recording client sent them. */
  send<T = Record<string, unknown>>(
    rpc: RpcName,
    bytes: Buffer,
    opts: { metadata?: Metadata; deadlineMs?: number } = {},
  ): Promise<GrpcAnswer<T>> {
    const method = inferenceService()[rpc]
    if (!method) throw new Error(`no method ${rpc}`)
    const callOptions: CallOptions =
      opts.deadlineMs === undefined ? {} : { deadline: Date.now() + opts.deadlineMs }
    return new Promise((resolve) => {
      let headers: Metadata | null = null
      const call = this.client.makeUnaryRequest<Buffer, T>(
        method.path,
        (b) => b,
        (b) => method.responseDeserialize(b) as T,
        bytes,
        opts.metadata ?? new Metadata(),
        callOptions,
        (error, response) => resolve({ response: response ?? null, error: error ?? null, headers }),
      )
      call.on('metadata', (m) => {
        headers = m
      })
    })
  }

  close(): void {
    this.client.close()
  }
}
