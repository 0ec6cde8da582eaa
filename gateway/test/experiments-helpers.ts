/**
 * Helpers for the experiment tests (workerd): the admin API, feedback, and inference as a given end user.
 * @module
 */
import {
  type CreateExperimentRequestInput,
  type Experiment,
  type ExperimentResults,
  ExperimentResultsSchema,
  ExperimentSchema,
  type FeedbackResponse,
  FeedbackResponseSchema,
} from '@twinserve/shared'
import { expect } from 'vitest'
import { bearer, gw, infer, inferBody } from './helpers.ts'
import { TEST_ADMIN_SECRET } from './test-env.ts'

const json = { 'content-type': 'application/json' }

export async function adminCall(
  method: string,
  path: string,
  body?: unknown,
  token = TEST_ADMIN_SECRET,
): Promise<Response> {
  return gw(path, {
    method,
    headers: { ...bearer(token), ...(body === undefined ? {} : json) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })
}

async function ok<T>(res: Response, status: number, parse: (v: unknown) => T): Promise<T> {
  const text = await res.text()
  expect(res.status, text).toBe(status)
  return parse(JSON.parse(text))
}

export async function createExperiment(req: CreateExperimentRequestInput): Promise<Experiment> {
  return ok(await adminCall('POST', '/admin/experiments', req), 201, (v) =>
    ExperimentSchema.parse(v),
  )
}

export async function startExperiment(id: string): Promise<Experiment> {
  return ok(await adminCall('POST', `/admin/experiments/${id}/start`), 200, (v) =>
    ExperimentSchema.parse(v),
  )
}

export async function stopExperiment(id: string): Promise<Experiment> {
  return ok(await adminCall('POST', `/admin/experiments/${id}/stop`), 200, (v) =>
    ExperimentSchema.parse(v),
  )
}

export async function results(id: string): Promise<ExperimentResults> {
  return ok(await adminCall('GET', `/admin/experiments/${id}/results`), 200, (v) =>
    ExperimentResultsSchema.parse(v),
  )
}

/** Inference as end user `user` (x-twinserve-user); returns the response. */
export function inferAs(
  model: string,
  key: string,
  user: string | undefined,
  headers: Record<string, string> = {},
  body: unknown = inferBody(),
): Promise<Response> {
  return infer(model, key, body, {
    ...(user === undefined ? {} : { 'x-twinserve-user': user }),
    ...headers,
  })
}

export function feedbackCall(key: string, body: unknown): Promise<Response> {
  return gw('/v1/feedback', {
    method: 'POST',
    headers: { ...bearer(key), ...json },
    body: JSON.stringify(body),
  })
}

export async function sendFeedback(key: string, body: unknown): Promise<FeedbackResponse> {
  return ok(await feedbackCall(key, body), 200, (v) => FeedbackResponseSchema.parse(v))
}

/** Two arms on `model`: control `base` ({variant: 'shared'}) and `twin` ({}), 50/50 unless given. */
export function twoArms(
  model: string,
  over: Partial<CreateExperimentRequestInput> = {},
): CreateExperimentRequestInput {
  return {
    name: `test ${model}`,
    model,
    unit: 'user_id',
    arms: [
      { name: 'base', weight: 50, control: true, parameters: { variant: 'shared' } },
      { name: 'twin', weight: 50, parameters: {} },
    ],
    ...over,
  }
}
