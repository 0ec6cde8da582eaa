/**
 * Triton's generate extension at the gateway (issue 14): `POST /v2/models/{m}[/versions/{v}]/generate` (one
 * JSON answer) and `…/generate_stream` (server-sent events, passed on as they arrive), proxied to a runner
 * holding the model like /v1 (generation-proxy.ts). The body is checked here as the runner checks it:
 * `text_input`, sampling keys in `parameters` (GenerateSamplingSchema) and every other key a merge control,
 * which a running A/B experiment's arm may replace (experiments/enrolment.ts; the arm is named in headers).
 * Errors keep the shared V2 body, as on every /v2 route.
 * @module
 */
import {
  AppError,
  describeIssues,
  GENERATE_SAMPLING_KEYS,
  GenerateRequestSchema,
  GenerateResponseSchema,
  GenerateSamplingSchema,
  parseJsonText,
  parseMergeControls,
} from '@twinserve/shared'
import type { Context } from 'hono'
import type { AppEnv } from '../app-env.ts'
import { enrol } from '../experiments/enrolment.ts'
import { readJsonText } from '../http/json-body.ts'
import { modelParam } from '../http/request-params.ts'
import { proxyGeneration } from './generation-proxy.ts'

function split(parameters: Record<string, unknown> | undefined) {
  const sampling: Record<string, unknown> = {}
  const controls: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(parameters ?? {}))
    (GENERATE_SAMPLING_KEYS.includes(k) ? sampling : controls)[k] = v
  const parsed = GenerateSamplingSchema.safeParse(sampling)
  if (!parsed.success)
    throw new AppError('INVALID_REQUEST', describeIssues(parsed.error, { root: 'parameters' }))
  return { sampling: parsed.data, controls }
}

/** The body with the merge controls in `parameters` replaced by `controls` (the sampling keys stay). */
function withControls(text: string, controls: Record<string, unknown>): string {
  const json = JSON.parse(text) as { parameters?: Record<string, unknown> }
  const sampling = Object.entries(json.parameters ?? {}).filter(([k]) =>
    GENERATE_SAMPLING_KEYS.includes(k),
  )
  const parameters = { ...Object.fromEntries(sampling), ...controls }
  if (Object.keys(parameters).length > 0) json.parameters = parameters
  else delete json.parameters
  return JSON.stringify(json)
}

/** The handler of `generate` (or, with `stream`, `generate_stream`). */
export function generateHandler(stream: boolean) {
  return async function generate(c: Context<AppEnv>): Promise<Response> {
    const arrived = Date.now()
    const model = modelParam(c)
    const text = await readJsonText(c, c.get('config').MAX_BODY_BYTES)
    const body = parseJsonText(text, GenerateRequestSchema, 'invalid generate request')
    const { sampling, controls } = split(body.parameters)
    parseMergeControls(controls)
    // A running A/B experiment on the model may replace the controls with its arm's (as for V2 infer).
    const enrolment = await enrol(c, { model, controls, arrived })
    const applied = enrolment.kind === 'as_sent' ? controls : enrolment.controls
    const version = c.req.param('version')
    const at = version === undefined ? '' : `/versions/${encodeURIComponent(version)}`
    const variant = typeof applied.variant === 'string' ? applied.variant : undefined
    return proxyGeneration(c, {
      model,
      path: `/v2/models/${model}${at}/${stream ? 'generate_stream' : 'generate'}`,
      body: enrolment.kind === 'as_sent' ? text : withControls(text, applied),
      stream: stream || sampling.stream === true,
      okSchema: GenerateResponseSchema,
      dropUsageOnly: false,
      arrived,
      variant,
      arm: enrolment.kind === 'arm' ? { enrolment, openai: false } : undefined,
    })
  }
}
