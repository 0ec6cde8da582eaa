/**
 * The runner's gRPC listener: its own port, KServe's inference service, and transport security. gRPC cannot carry
 * the gateway's HMAC signature over the body, so a gRPC port is either plaintext for local use (the runner's
 * `--insecure-local`) or mutual TLS: the runner presents its certificate and accepts only clients whose
 * certificate the configured CA signed (config.ts refuses any other combination at start).
 * @module
 */
import { readFile } from 'node:fs/promises'
import { Server, ServerCredentials } from '@grpc/grpc-js'
import type { AppDeps } from '../server/app-deps.ts'
import { inferenceServiceImplementation } from './inference-service.ts'
import { inferenceService } from './proto.ts'

/** PEM file paths of the mTLS setup. */
export interface GrpcTlsFiles {
  /** The runner's certificate chain. */
  cert: string
  /** Its private key. */
  key: string
  /** The CA whose signature a client certificate must carry. */
  clientCa: string
}

export interface GrpcServerOptions {
  host: string
  /** 0 picks a free port. */
  port: number
  /** Mutual TLS; absent: plaintext (only with --insecure-local). */
  tls?: GrpcTlsFiles
}

export interface GrpcServer {
  port: number
  /** Lets calls in progress finish (up to `graceMs`), then cuts the rest. */
  close(graceMs: number): Promise<void>
}

async function readPem(what: string, path: string): Promise<Buffer> {
  try {
    return await readFile(path)
  } catch (err) {
    // A start-up failure (serve-command.ts logs it and exits), not a request's.
    throw new Error(
      `gRPC TLS: cannot read the ${what} at ${path}: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    )
  }
}

async function credentials(tls: GrpcTlsFiles | undefined): Promise<ServerCredentials> {
  if (!tls) return ServerCredentials.createInsecure()
  const [cert, key, ca] = await Promise.all([
    readPem('certificate (--grpc-tls-cert)', tls.cert),
    readPem('private key (--grpc-tls-key)', tls.key),
    readPem('client CA (--grpc-tls-client-ca)', tls.clientCa),
  ])
  // checkClientCertificate: a client without a certificate signed by `ca` fails the handshake.
  return ServerCredentials.createSsl(ca, [{ cert_chain: cert, private_key: key }], true)
}

/** Starts the gRPC listener over the app's dependencies. */
export async function startGrpcServer(deps: AppDeps, opts: GrpcServerOptions): Promise<GrpcServer> {
  const server = new Server({
    // The same bound as a REST body: a larger message is refused with RESOURCE_EXHAUSTED before it is decoded.
    'grpc.max_receive_message_length': deps.maxBodyBytes,
  })
  server.addService(inferenceService(), inferenceServiceImplementation(deps))
  const creds = await credentials(opts.tls)
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${opts.port}`, creds, (err, bound) =>
      err ? reject(err) : resolve(bound),
    ),
  )
  return {
    port,
    close: (graceMs) =>
      new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown()
          resolve()
        }, graceMs)
        server.tryShutdown(() => {
          clearTimeout(force)
          resolve()
        })
      }),
  }
}
