/**
 * Writes the API reference: OpenAPI 3.1 documents generated from the shared zod schemas (the objects that validate
 * requests at run time), so the reference cannot drift from what the services accept.
 *
 *   docs/api/openapi.json         the gateway: what clients and admins call (the same document it serves at
 *                                 GET /openapi.json)
 *   docs/api/runner-openapi.json  a GPU runner: what the gateway calls, signed (and what a runner serves with
 *                                 --insecure-local on a workstation)
 *
 *   npm run docs:openapi             regenerate (atomically: temp file, then rename)
 *   npm run docs:openapi -- --check  exit 1 if a committed document is stale (test/infra/openapi.test.ts runs it)
 * @module
 */
import { readFile, rename, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { componentSchemas } from '../gateway/src/openapi/component-schemas.ts'
import {
  error,
  type Json,
  json,
  OIP_INPUT_SCHEMAS,
  OIP_OUTPUT_SCHEMAS,
  RUNNER_SIGNATURE_SCHEMES,
  ref,
} from '../gateway/src/openapi/doc-parts.ts'

const ROOT = fileURLToPath(new URL('../', import.meta.url))
const VERSION = (JSON.parse(await readFile(`${ROOT}package.json`, 'utf8')) as { version: string })
  .version

/**
 * The gateway's document builder. Its module graph reaches gateway code typed for workerd (this script
 * typechecks with Node's types), so it is loaded by path at run time; it runs in Node as is.
 */
const { buildOpenApiDocument } = (await import(
  `${ROOT}gateway/src/openapi/openapi-document.ts`
)) as { buildOpenApiDocument: (version: string) => Json }

/** The runner's routes (gpu-runner/src/server/app.ts), with the shared schemas they speak. */
export function buildRunnerOpenApiDocument(version: string): Json {
  const signed = [{ runnerSignature: [], runnerTimestamp: [] }]
  const model: Json = { name: 'model', in: 'path', required: true, schema: { type: 'string' } }
  const deadline: Json = {
    name: 'x-twinserve-deadline-ms',
    in: 'header',
    required: false,
    description: 'The gateway waits this many ms for this attempt; the runner never waits longer.',
    schema: { type: 'integer', minimum: 1 },
  }
  const unsigned = error('Missing, wrong or expired signature (UNAUTHENTICATED).')
  return {
    openapi: '3.1.0',
    info: {
      title: 'Twinserve GPU runner',
      version,
      description:
        'Open Inference Protocol V2 REST, served by `twinserve serve`. The gateway signs every request (HMAC-SHA256 with RUNNER_SIGNING_SECRET); health and metrics are unsigned for probes and scrapers. Merge controls go in the inference request’s `parameters` (schema MergeControls).',
    },
    components: {
      schemas: {
        ...componentSchemas(OIP_INPUT_SCHEMAS, 'input', 'InputShared_'),
        ...componentSchemas(OIP_OUTPUT_SCHEMAS, 'output', 'OutputShared_'),
      },
      securitySchemes: RUNNER_SIGNATURE_SCHEMES,
    },
    paths: {
      '/v2/health/live': {
        get: {
          summary: 'Liveness (the process serves HTTP); unsigned',
          responses: { '200': json('LiveResponse', 'Live.') },
        },
      },
      '/v2/health/ready': {
        get: {
          summary: 'Readiness: every package loaded and not draining; unsigned',
          responses: {
            '200': json('ReadyResponse', 'Ready.'),
            '503': json('ReadyResponse', 'Loading or draining.'),
          },
        },
      },
      '/v2': {
        get: {
          summary: 'Server metadata (with provider and models)',
          security: signed,
          responses: {
            '200': json('ServerMetadata', 'Name, version, extensions.'),
            '401': unsigned,
          },
        },
      },
      '/v2/models/{model}': {
        get: {
          summary: 'Model metadata (experts, variants, provider in parameters)',
          security: signed,
          parameters: [model],
          responses: {
            '200': json('ModelMetadata', 'Inputs, outputs, platform.'),
            '401': unsigned,
            '404': error('No such model (NOT_FOUND).'),
          },
        },
      },
      '/v2/models/{model}/ready': {
        get: {
          summary: 'Whether the model is ready',
          security: signed,
          parameters: [model],
          responses: {
            '200': json('ModelReadyResponse', 'Ready.'),
            '503': json('ModelReadyResponse', 'Not ready (draining).'),
            '401': unsigned,
            '404': error('No such model (NOT_FOUND).'),
          },
        },
      },
      '/v2/models/{model}/infer': {
        post: {
          summary: 'Inference, with per-request merge controls',
          security: signed,
          parameters: [model, deadline],
          requestBody: {
            required: true,
            content: { 'application/json': { schema: ref('InferenceRequest') } },
          },
          responses: {
            '200': json('InferenceResponse', 'Outputs (and the expert weights applied).'),
            '400': error('Malformed body, tensor or merge control (INVALID_REQUEST).'),
            '401': unsigned,
            '404': error('No such model (NOT_FOUND) or expert (UNKNOWN_EXPERT).'),
            '413': error('Body larger than RUNNER_MAX_BODY_BYTES (PAYLOAD_TOO_LARGE).'),
            '415': error('Content-Type is not application/json (UNSUPPORTED_MEDIA_TYPE).'),
            '503': {
              ...error('Queue full or draining (RUNNER_OVERLOADED).'),
              headers: { 'retry-after': { schema: { type: 'integer' } } },
            },
            '504': error('Deadline passed before the run finished (RUNNER_TIMEOUT).'),
          },
        },
      },
      '/metrics': {
        get: {
          summary: 'Prometheus metrics (twinserve_runner_*); unsigned, keep it inside the cluster',
          responses: {
            '200': {
              description: 'Prometheus text format.',
              content: { 'text/plain': { schema: { type: 'string' } } },
            },
          },
        },
      },
    },
  }
}

/** File (relative to the repository root) → its generated text. */
export function buildApiDocs(): Record<string, string> {
  const text = (doc: Json) => `${JSON.stringify(doc, null, 2)}\n`
  return {
    'docs/api/openapi.json': text(buildOpenApiDocument(VERSION)),
    'docs/api/runner-openapi.json': text(buildRunnerOpenApiDocument(VERSION)),
  }
}

async function main(args: string[]): Promise<number> {
  const check = args.includes('--check')
  let stale = 0
  for (const [rel, text] of Object.entries(buildApiDocs())) {
    const path = `${ROOT}${rel}`
    const current = await readFile(path, 'utf8').catch(() => undefined)
    if (current === text) continue
    if (check) {
      process.stderr.write(`${rel} is stale: run npm run docs:openapi\n`)
      stale++
      continue
    }
    await writeFile(`${path}.tmp`, text)
    await rename(`${path}.tmp`, path)
    process.stdout.write(`wrote ${rel}\n`)
  }
  return stale ? 1 : 0
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1])
  process.exitCode = await main(process.argv.slice(2))
