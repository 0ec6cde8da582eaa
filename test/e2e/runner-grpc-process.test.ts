/**
 * The `twinserve serve` process with `--grpc-port` (issue #15): it refuses to open a gRPC port with neither mutual
 * TLS nor --insecure-local, saying why; with --insecure-local it serves the recorded tritonclient.grpc ModelInfer
 * over the demo package with the logits its REST side gives, and drains and exits 0 on SIGTERM.
 */
import { spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { decodeRaw, inferenceService, type ModelInferResponse } from '@twinserve/gpu-runner/grpc'
import { InferenceTestClient } from '@twinserve/gpu-runner/test-support'
import { InferenceResponseSchema } from '@twinserve/shared'
import { describe, expect, it } from 'vitest'
import { startRunnerProcess, TWINSERVE_BIN } from '../support/runner-harness.ts'

const DEMO_PACKAGE = fileURLToPath(new URL('../../zoo/fashion/package', import.meta.url))
const RECORDED = fileURLToPath(
  new URL('../fixtures/v2-clients/grpc/triton-infer-fp32-raw.request.bin', import.meta.url),
)

describe('twinserve serve --grpc-port', () => {
  it('refuses to start gRPC without mutual TLS or --insecure-local, naming both', async () => {
    const child = spawn(
      process.execPath,
      [TWINSERVE_BIN, 'serve', '--package', DEMO_PACKAGE, '--port', '0', '--grpc-port', '0'],
      {
        env: { ...process.env, RUNNER_SIGNING_SECRET: 'e2e-secret-abcdefghijklmnop' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    )
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      stderr += c
    })
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
    expect(code).toBe(2)
    expect(stderr).toMatch(
      /--grpc-port \(RUNNER_GRPC_PORT\): gRPC cannot carry the gateway's request signature: serve it with mutual TLS \(--grpc-tls-cert, --grpc-tls-key, --grpc-tls-client-ca\) or, for local use only, --insecure-local/,
    )
  })

  it('serves the recorded tritonclient.grpc call with the logits of its REST side, then drains', async () => {
    const runner = await startRunnerProcess({
      packages: [DEMO_PACKAGE],
      insecureLocal: true,
      args: ['--grpc-port', '0'],
    })
    const listening = runner.logs.find((l) => l.msg === 'listening')
    expect(listening?.grpc_port).toEqual(expect.any(Number))
    const client = new InferenceTestClient(`127.0.0.1:${listening?.grpc_port}`)
    try {
      const bytes = await readFile(RECORDED)
      const answer = await client.send<ModelInferResponse>('ModelInfer', bytes)
      expect(answer.error, answer.error?.details).toBeNull()
      const msg = inferenceService().ModelInfer?.requestDeserialize(bytes) as {
        raw_input_contents: Buffer[]
      }
      const pixels = decodeRaw('pixels', 'FP32', 784, msg.raw_input_contents[0] ?? Buffer.alloc(0))
      const res = await fetch(`${runner.url}/v2/models/fashion-twin/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 784], data: pixels }],
          outputs: [{ name: 'logits' }],
        }),
      })
      const viaRest = InferenceResponseSchema.parse(await res.json())
      const at = answer.response?.outputs.findIndex((o) => o.name === 'logits') ?? -1
      const logits = decodeRaw(
        'logits',
        'FP32',
        10,
        answer.response?.raw_output_contents[at] ?? Buffer.alloc(0),
      )
      expect(logits).toEqual(viaRest.outputs[0]?.data)
    } finally {
      client.close()
      expect(await runner.stop()).toBe(0)
    }
  })
})
