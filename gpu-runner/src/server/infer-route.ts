/**
 * `POST /v2/models/{model}/infer`: validate the request (content type, JSON, schema, deadline header), then run
 * it (run-inference.ts: merge controls, the scheduler within the caller's deadline, metrics and the log line).
 * @module
 */
import {
  DEADLINE_HEADER,
  InferenceRequestSchema,
  parseDeadlineHeader,
  parseJsonText,
  requireJsonContentType,
} from '@twinserve/shared'
import type { Context } from 'hono'
import type { ServedModel } from '../model/served-model.ts'
import type { AppDeps } from './app-deps.ts'
import { runInference } from './run-inference.ts'
import type { RunnerAppEnv } from './runner-app-env.ts'

/** The infer handler; `modelOf` answers 404 for models not served here. */
export function inferHandler(deps: AppDeps, modelOf: (name: string) => ServedModel) {
  return async function infer(c: Context<RunnerAppEnv>): Promise<Response> {
    const name = c.req.param('model') ?? ''
    const call = {
      requestId: c.get('requestId'),
      tenant: c.get('tenant') ?? '',
      started: performance.now(),
      signal: c.req.raw.signal,
    }
    const body = await runInference(deps, call, {
      modelName: name,
      model: () => modelOf(name),
      decode: () => {
        requireJsonContentType(c.req.header('content-type'))
        const req = parseJsonText(
          c.get('body'),
          InferenceRequestSchema,
          'invalid inference request',
        )
        // The gateway may ask for less than the runner's limit.
        const asked = c.req.header(DEADLINE_HEADER)
        return { req, ...(asked === undefined ? {} : { deadlineMs: parseDeadlineHeader(asked) }) }
      },
    })
    return c.json(body)
  }
}
