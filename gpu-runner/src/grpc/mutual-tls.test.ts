/**
 * The gRPC port with mutual TLS, as a signed (not --insecure-local) runner serves it: a throwaway CA made with
 * openssl signs the runner's certificate and one client's; that client is served, while a client without a
 * certificate, one whose certificate another CA signed, and a plaintext client are refused in the handshake.
 */
import { execFileSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { credentials, status } from '@grpc/grpc-js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writeTwinFixture } from '../../../test/fixtures/twin-fixture.ts'
import { InferenceTestClient } from '../../test-support/grpc-client.ts'
import { RunnerConfigSchema } from '../config.ts'
import { createLogger } from '../server/logger.ts'
import { type Runner, startRunner } from '../server/runner.ts'
import type { ModelInferResponse } from './messages.ts'
import { encodeRaw } from './raw-tensors.ts'

const root = await mkdtemp(join(tmpdir(), 'twinserve-grpc-tls-'))
const file = (name: string) => join(root, name)
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: root, stdio: 'pipe' })
}

/** A CA: self-signed, allowed to sign certificates. */
function makeCa(name: string): void {
  openssl(
    'req',
    '-x509',
    ...EC,
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.pem`,
    '-days',
    '1',
    '-subj',
    `/CN=${name}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign',
  )
}

/** A leaf certificate `name` signed by `ca`, with `ext` (an openssl extension line). */
async function makeLeaf(name: string, ca: string, ext: string): Promise<void> {
  openssl('req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`)
  await writeFile(file(`${name}.ext`), `${ext}\n`)
  openssl(
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${ca}.pem`,
    '-CAkey',
    `${ca}.key`,
    '-CAcreateserial',
    '-out',
    `${name}.pem`,
    '-days',
    '1',
    '-extfile',
    `${name}.ext`,
  )
}

let runner: Runner
let address: string
let caPem: Buffer
const clients: InferenceTestClient[] = []

async function clientWith(cert?: string): Promise<InferenceTestClient> {
  const c = new InferenceTestClient(
    address,
    cert
      ? credentials.createSsl(
          caPem,
          await readFile(file(`${cert}.key`)),
          await readFile(file(`${cert}.pem`)),
        )
      : credentials.createSsl(caPem),
  )
  clients.push(c)
  return c
}

beforeAll(async () => {
  makeCa('test-ca')
  makeCa('other-ca')
  await makeLeaf('runner', 'test-ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost')
  await makeLeaf('client-a', 'test-ca', 'extendedKeyUsage=clientAuth')
  await makeLeaf('intruder', 'other-ca', 'extendedKeyUsage=clientAuth')
  caPem = await readFile(file('test-ca.pem'))
  const pkg = join(root, 'pkg')
  await writeTwinFixture(pkg)
  runner = await startRunner(
    RunnerConfigSchema.parse({
      packages: [pkg],
      port: 0,
      provider: 'cpu',
      threads: 1,
      signingSecret: 'test-secret-0123456789abcdef',
      grpcPort: 0,
      grpcTlsCert: file('runner.pem'),
      grpcTlsKey: file('runner.key'),
      grpcTlsClientCa: file('test-ca.pem'),
    }),
    { logger: createLogger({ level: 'error', sink: () => undefined }) },
  )
  address = `127.0.0.1:${runner.grpcPort}`
})
afterAll(async () => {
  for (const c of clients) c.close()
  await runner?.shutdown('test done')
  await rm(root, { recursive: true, force: true })
})

describe('gRPC with mutual TLS', () => {
  it('serves a client whose certificate the configured CA signed', async () => {
    const client = await clientWith('client-a')
    expect((await client.call('ServerLive', {})).response).toEqual({ live: true })
    const answer = await client.call<ModelInferResponse>('ModelInfer', {
      model_name: 'tiny-twin',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 6] }],
      raw_input_contents: [encodeRaw('FP32', [0.5, -1, 2, 0.25, 1.5, -0.75])],
    })
    expect(answer.error).toBeNull()
    expect(answer.response?.outputs.map((o) => o.name)).toContain('y')
  })

  it.each([
    ['no client certificate', undefined],
    ['a certificate another CA signed', 'intruder'],
  ])('refuses a client with %s', async (_what, cert) => {
    const client = await clientWith(cert)
    const answer = await client.call('ServerLive', {}, { deadlineMs: 5000 })
    expect(answer.response).toBeNull()
    expect(answer.error?.code).toBe(status.UNAVAILABLE)
  })

  it('refuses a plaintext client', async () => {
    const client = new InferenceTestClient(address)
    clients.push(client)
    const answer = await client.call('ServerLive', {}, { deadlineMs: 5000 })
    expect(answer.response).toBeNull()
    expect(answer.error?.code).toBe(status.UNAVAILABLE)
  })

  it('keeps REST signed: the same runner refuses an unsigned REST call', async () => {
    const res = await fetch(`${runner.url}/v2/models/tiny-twin`)
    expect(res.status).toBe(401)
  })
})
