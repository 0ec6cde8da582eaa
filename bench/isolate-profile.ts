/**
 * A CPU profile of a Worker isolate through workerd's inspector (Chrome DevTools Protocol, `Profiler` domain),
 * and the summary RESULTS.md keeps of it: the frames with the most self time.
 * @module
 */
// undici (Miniflare's HTTP client, so always installed) has the WHATWG WebSocket client Node 20 keeps behind a flag.
import { WebSocket } from 'undici'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  hitCount?: number
}

export interface CpuProfile {
  nodes: ProfileNode[]
  startTime: number
  endTime: number
  samples: number[]
  timeDeltas: number[]
}

/**
 * Profiles the isolate named `worker` on the inspector at `port` while `during` runs (sampling every
 * `intervalUs`), and returns the profile (the .cpuprofile format DevTools opens).
 */
export async function profileIsolate(
  port: number,
  worker: string,
  during: () => Promise<void>,
  intervalUs = 200,
): Promise<CpuProfile> {
  const targets = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as {
    id: string
    webSocketDebuggerUrl?: string
  }[]
  const target = targets.find((t) => t.id.includes(worker) && t.webSocketDebuggerUrl)
  if (!target?.webSocketDebuggerUrl)
    throw new Error(`no inspector target for ${worker}: ${JSON.stringify(targets)}`)
  const ws = new WebSocket(target.webSocketDebuggerUrl)
  await new Promise((resolve, reject) => {
    ws.addEventListener('open', resolve, { once: true })
    ws.addEventListener('error', reject, { once: true })
  })
  let next = 1
  const pending = new Map<number, (result: unknown) => void>()
  ws.addEventListener('message', (event) => {
    const msg = JSON.parse(String(event.data)) as { id?: number; result?: unknown }
    if (msg.id !== undefined) pending.get(msg.id)?.(msg.result)
  })
  const send = (method: string, params: object = {}) =>
    new Promise<unknown>((resolve) => {
      const id = next++
      pending.set(id, resolve)
      ws.send(JSON.stringify({ id, method, params }))
    })
  try {
    await send('Profiler.enable')
    await send('Profiler.setSamplingInterval', { interval: intervalUs })
    await send('Profiler.start')
    await during()
    const { profile } = (await send('Profiler.stop')) as { profile: CpuProfile }
    return profile
  } finally {
    ws.close()
  }
}

export interface Frame {
  name: string
  /** Share of all samples where this frame was on top (self time). */
  selfShare: number
  selfMs: number
}

/** The `n` frames with the most self time; `(idle)` is left out of the shares (the isolate waited). */
export function topFrames(profile: CpuProfile, n: number): { busyMs: number; frames: Frame[] } {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const selfUs = new Map<string, number>()
  let busyUs = 0
  profile.samples.forEach((id, i) => {
    const node = byId.get(id)
    if (!node) return
    const dt = profile.timeDeltas[i + 1] ?? 0
    const { functionName, url, lineNumber } = node.callFrame
    if (functionName === '(idle)') return
    const file = url.split('/').pop() ?? ''
    const name = `${functionName || '(anonymous)'}${file ? ` ${file}:${lineNumber + 1}` : ''}`
    selfUs.set(name, (selfUs.get(name) ?? 0) + dt)
    busyUs += dt
  })
  const frames = [...selfUs]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([name, us]) => ({ name, selfShare: us / busyUs, selfMs: us / 1000 }))
  return { busyMs: busyUs / 1000, frames }
}
