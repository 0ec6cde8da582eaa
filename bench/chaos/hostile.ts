/**
 * Issue #16's hostile requests against the demo package, sent by tenant A with a valid key of its own, each with
 * the statuses that count as held: the same cases as test/e2e/tenant-isolation.test.ts (which runs them on a tiny
 * fixture in `npm test`), here on the real demo model and real processes. A case that gets any other status
 * failed.
 * @module
 */
import { INFERENCE_HEADER_CONTENT_LENGTH, signRequest } from '@twinserve/shared'
import type { E2eGateway } from '../../test/support/gateway-harness.ts'
import { announcedHugePost } from '../../test/support/raw-post.ts'

export interface HostileResult {
  what: string
  status: number | 'no answer'
  held: boolean
}

/** One Fashion-MNIST-shaped request (FP32 [rows, 784]) with optional merge parameters. */
export const pixelsBody = (pixel: number, rows = 1, parameters?: Record<string, unknown>) => ({
  inputs: [
    {
      name: 'pixels',
      datatype: 'FP32',
      shape: [rows, 784],
      data: Array.from({ length: rows * 784 }, (_, i) => (i % 7 === 0 ? pixel : 0)),
    },
  ],
  ...(parameters ? { parameters } : {}),
})

/** The same rows as pixelsBody, as a binary tensor body (Triton's binary extension): JSON header + raw FP32. */
export function binaryPixelsBody(pixel: number, rows: number) {
  const data = new Float32Array(rows * 784).map((_, i) => (i % 7 === 0 ? pixel : 0))
  const header = new TextEncoder().encode(
    JSON.stringify({
      inputs: [
        {
          name: 'pixels',
          datatype: 'FP32',
          shape: [rows, 784],
          parameters: { binary_data_size: data.byteLength },
        },
      ],
    }),
  )
  const body = new Uint8Array(header.length + data.byteLength)
  body.set(header)
  body.set(new Uint8Array(data.buffer), header.length)
  return {
    body,
    headers: {
      'content-type': 'application/octet-stream',
      [INFERENCE_HEADER_CONTENT_LENGTH]: String(header.length),
    },
  }
}

/** Sends every hostile case once; `runnerUrls` are the runners' own addresses (reachable through an ingress). */
export async function hostileCases(
  gw: E2eGateway,
  key: string,
  model: string,
  runnerUrls: readonly string[],
): Promise<HostileResult[]> {
  const out: HostileResult[] = []
  const send = async (what: string, body: unknown, ok: number[], headers = {}) => {
    const { status } = await gw.infer(key, model, body, headers)
    out.push({ what, status, held: ok.includes(status) })
  }
  const ties = { merge_method: 'ties' }
  await send('expert weight 1e39', pixelsBody(0.5, 1, { experts: { original: 1e39 } }), [400])
  await send(
    'expert weights ±1e30',
    pixelsBody(0.5, 1, { experts: { original: 1e30, inverted: -1e30 } }),
    [400],
  )
  await send(
    'lambda 1e38',
    pixelsBody(0.5, 1, { experts: { original: 1 }, ...ties, lambda: 1e38 }),
    [400],
  )
  await send('pixels 1e300', pixelsBody(1e300), [400])
  // Finite float32, but the logits overflow: a 422 naming the row, never 200 with nulls.
  await send('pixels 3e38', pixelsBody(3e38), [422])
  // The case is that the caller's own budget running out never opens a breaker (tenant B stays served, checked
  // by the scenario). A quiet gateway may finish within 4–8 ms: a 200 in time holds too.
  for (let ms = 2; ms <= 8; ms++)
    await send(`own deadline ${ms} ms`, pixelsBody(0.5), [200, 503, 504], {
      'x-twinserve-deadline-ms': String(ms),
    })
  const deep = `{"inputs":[{"name":"pixels","shape":[1,784],"datatype":"FP32","data":${'['.repeat(2000)}1${']'.repeat(2000)}}]}`
  await send('data nested 2,000 deep', deep, [400])
  for (let i = 0; i < 10; i++)
    await send(
      `density ${0.3 + i * 1e-9} (cache-busting)`,
      pixelsBody(0.5, 1, {
        experts: { original: 1, inverted: 1 },
        ...ties,
        density: 0.3 + i * 1e-9,
      }),
      [200, 429],
    )
  for (const name of ['x'.repeat(6000), 'made-up-model']) {
    const res = await fetch(`${gw.url}/v2/models/${name}/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(pixelsBody(0.5)),
    })
    await res.arrayBuffer()
    out.push({
      what: 'no key, made-up model',
      status: res.status,
      held: [400, 401].includes(res.status),
    })
  }
  for (const url of runnerUrls) {
    const status = await announcedHugePost(`${url}/v2/models/${model}/infer`, 30 * 2 ** 20)
    out.push({ what: 'unsigned 30 MiB POST at a runner', status, held: status === 401 })
  }
  const path = `/v2/models/${model}/infer`
  const text = JSON.stringify(pixelsBody(0.5))
  const signed = await signRequest(gw.secret, {
    method: 'POST',
    path,
    body: text,
    tenant: 'chaos-a',
  })
  for (const what of ['signed request, first time', 'the same signed request replayed']) {
    const res = await fetch(`${runnerUrls[0]}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...signed },
      body: text,
    })
    await res.arrayBuffer()
    const ok = what.startsWith('signed') ? 200 : 401
    out.push({ what, status: res.status, held: res.status === ok })
  }
  return out
}
