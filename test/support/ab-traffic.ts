/**
 * Simulated users for A/B experiments against the real gateway: each user (x-twinserve-user) sends Fashion-MNIST
 * test-split images of one zoo domain (original, inverted, rotated, …) to the model, and answers every response
 * with label feedback (POST /v1/feedback {request_id, label}) — the gateway compares the label with the prediction
 * it recorded. Used by the dashboard e2e test and bench/ab-demo.ts (the end-to-end run).
 * @module
 */

import {
  type CreateExperimentRequestInput,
  type Experiment,
  type ExperimentResults,
  ExperimentResultsSchema,
  ExperimentSchema,
  FeedbackResponseSchema,
} from '@twinserve/shared'
import { IMAGE_PIXELS, loadTaskSplit, type TaskSplit } from '@twinserve/zoo/fashion'
import { seededRng } from '../../gateway/src/experiments/statistics/random.ts'

/** The Fashion-MNIST domains of the demo zoo (digits is another data set, so it is left out here). */
export const FASHION_TASKS = ['original', 'inverted', 'rotated', 'permuted', 'blur-noise'] as const

export interface AdminClient {
  url: string
  admin: string
}

async function call(gw: AdminClient, method: string, path: string, body?: unknown) {
  const res = await fetch(`${gw.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${gw.admin}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })
  const text = await res.text()
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`)
  return JSON.parse(text) as unknown
}

export async function createAndStart(
  gw: AdminClient,
  req: CreateExperimentRequestInput,
): Promise<Experiment> {
  const e = ExperimentSchema.parse(await call(gw, 'POST', '/admin/experiments', req))
  return ExperimentSchema.parse(await call(gw, 'POST', `/admin/experiments/${e.id}/start`))
}

export async function experimentResults(gw: AdminClient, id: string): Promise<ExperimentResults> {
  return ExperimentResultsSchema.parse(await call(gw, 'GET', `/admin/experiments/${id}/results`))
}

/** The demo's experiment: the static TIES variant (control) against twin routing, split 50/50 by user. */
export function twinVersusTies(
  model: string,
  over: Partial<CreateExperimentRequestInput> = {},
): CreateExperimentRequestInput {
  return {
    name: 'twin routing vs static TIES',
    model,
    unit: 'user_id',
    arms: [
      {
        name: 'ties',
        weight: 50,
        control: true,
        parameters: { variant: 'ties' },
        description: 'static TIES merge built into the package',
      },
      {
        name: 'twin',
        weight: 50,
        parameters: {},
        description: 'Twin-Merging: router mixes the exclusive experts per input',
      },
    ],
    prediction_output: 'logits',
    ...over,
  }
}

export interface TrafficOptions {
  gatewayUrl: string
  /** An API key with the infer scope covering `model`. */
  key: string
  model: string
  users: number
  /** Requests in total (each followed by its feedback). */
  requests: number
  /** Users sending at the same time. */
  concurrency: number
  seed: number
  /** Test images per task to draw from (the first `imagesPerTask` of each task's test split). */
  imagesPerTask: number
  /** Called after every `checkEvery` feedbacks; returning true ends the run early. */
  shouldStop?: (sent: number) => Promise<boolean>
  checkEvery?: number
}

export interface ArmTally {
  served: number
  correct: number
  /** Gateway latency seen by the client, ms. */
  latencies: number[]
}

export interface TrafficResult {
  sent: number
  /** Requests the experiment did not enrol (no arm header). */
  unenrolled: number
  failed: number
  byArm: Record<string, ArmTally>
  /** user → the arm(s) it was served by (sticky: one each). */
  armsOfUser: Map<string, Set<string>>
  stoppedEarly: boolean
}

/** Runs the simulated users; every served request gets label feedback. */
export async function simulateUsers(opts: TrafficOptions): Promise<TrafficResult> {
  const splits = new Map<string, TaskSplit>()
  for (const t of FASHION_TASKS)
    splits.set(t, loadTaskSplit(t, 'test', { limit: opts.imagesPerTask }))
  // Seeded (the gateway's own mulberry32), so a run is replayable.
  const random = seededRng(opts.seed)
  const result: TrafficResult = {
    sent: 0,
    unenrolled: 0,
    failed: 0,
    byArm: {},
    armsOfUser: new Map(),
    stoppedEarly: false,
  }
  const checkEvery = opts.checkEvery ?? 50
  let next = 0
  let stop = false

  // The whole plan is drawn up front, so a run is the same whatever order concurrent requests finish in.
  const plan = Array.from({ length: opts.requests }, () => {
    const u = Math.floor(random() * opts.users)
    // Each user lives in one domain (their camera, their lighting), as real traffic clusters.
    const task = FASHION_TASKS[u % FASHION_TASKS.length] ?? 'original'
    const split = splits.get(task) as TaskSplit
    return { user: `user-${u}`, split, row: Math.floor(random() * split.n) }
  })

  const one = async (i: number) => {
    const { user, split, row } = plan[i] as (typeof plan)[number]
    const requestId = `ab-${opts.seed}-${i}`
    const started = performance.now()
    const res = await fetch(`${opts.gatewayUrl}/v2/models/${opts.model}/infer`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${opts.key}`,
        'content-type': 'application/json',
        'x-twinserve-user': user,
        'x-request-id': requestId,
      },
      body: JSON.stringify({
        inputs: [
          {
            name: 'pixels',
            shape: [1, IMAGE_PIXELS],
            datatype: 'FP32',
            data: Array.from(split.x.subarray(row * IMAGE_PIXELS, (row + 1) * IMAGE_PIXELS)),
          },
        ],
      }),
    })
    const latency = performance.now() - started
    const body = (await res.json()) as { outputs?: { name: string; data: number[] }[] }
    result.sent += 1
    if (res.status !== 200) {
      result.failed += 1
      return
    }
    const arm = res.headers.get('x-twinserve-arm')
    if (arm === null) {
      result.unenrolled += 1
      return
    }
    const label = split.y[row] as number
    const logits = body.outputs?.find((o) => o.name === 'logits')?.data ?? []
    const predicted = logits.indexOf(Math.max(...logits))
    const tally = result.byArm[arm] ?? { served: 0, correct: 0, latencies: [] }
    tally.served += 1
    tally.correct += predicted === label ? 1 : 0
    tally.latencies.push(latency)
    result.byArm[arm] = tally
    const seen = result.armsOfUser.get(user) ?? new Set<string>()
    seen.add(arm)
    result.armsOfUser.set(user, seen)
    const fb = await fetch(`${opts.gatewayUrl}/v1/feedback`, {
      method: 'POST',
      headers: { authorization: `Bearer ${opts.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ request_id: requestId, label }),
    })
    const fbText = await fb.text()
    if (fb.status !== 200) throw new Error(`feedback for ${requestId}: ${fb.status} ${fbText}`)
    const recorded = FeedbackResponseSchema.parse(JSON.parse(fbText))
    // The gateway's verdict (its recorded prediction vs the label) must be the client's own.
    if (recorded.reward !== (predicted === label ? 1 : 0) || recorded.arm !== arm)
      throw new Error(
        `feedback for ${requestId}: gateway scored ${recorded.reward} on ${recorded.arm}, client saw ${predicted} vs ${label} on ${arm}`,
      )
  }

  const worker = async () => {
    while (!stop) {
      const i = next++
      if (i >= opts.requests) return
      await one(i)
      if (opts.shouldStop && (i + 1) % checkEvery === 0 && (await opts.shouldStop(i + 1))) {
        stop = true
        result.stoppedEarly = true
      }
    }
  }
  await Promise.all(Array.from({ length: opts.concurrency }, worker))
  return result
}
