/**
 * zod → JSON Schema 2020-12 (OpenAPI 3.1's dialect) for a set of named schemas, with cross references between
 * them as `#/components/schemas/<id>`. zod puts recursive pieces (tensor `data` nesting) in a `__shared`
 * document; they are lifted into components of their own so every $ref is a plain OpenAPI pointer.
 * @module
 */
import { z } from 'zod'

export type JsonSchema = Record<string, unknown>
const COMPONENTS = '#/components/schemas/'

function rewriteRefs(node: unknown, rename: (ref: string) => string): unknown {
  if (Array.isArray(node)) return node.map((n) => rewriteRefs(n, rename))
  if (node === null || typeof node !== 'object') return node
  const out: JsonSchema = {}
  for (const [k, v] of Object.entries(node)) {
    if (k === '$schema' || k === '$id') continue
    out[k] = k === '$ref' && typeof v === 'string' ? rename(v) : rewriteRefs(v, rename)
  }
  return out
}

/**
 * @param schemas id → zod schema
 * @param io 'input' for request bodies (defaults optional), 'output' for responses
 * @param sharedPrefix names the lifted recursive pieces, e.g. `Input` → `InputShared0`
 */
export function componentSchemas(
  schemas: Record<string, z.ZodType>,
  io: 'input' | 'output',
  sharedPrefix: string,
): Record<string, JsonSchema> {
  const registry = z.registry<{ id: string }>()
  for (const [id, schema] of Object.entries(schemas)) registry.add(schema, { id })
  const { schemas: converted } = z.toJSONSchema(registry, {
    io,
    uri: (id) => `${COMPONENTS}${id}`,
    // Refinements (tensor shape/data checks) have no JSON Schema form; they are described in prose instead.
    unrepresentable: 'any',
  })
  const sharedRef = `${COMPONENTS}__shared#/$defs/`
  const rename = (ref: string) =>
    ref.startsWith(sharedRef) ? `${COMPONENTS}${sharedPrefix}${ref.slice(sharedRef.length)}` : ref
  const out: Record<string, JsonSchema> = {}
  for (const [id, schema] of Object.entries(converted)) {
    if (id === '__shared') {
      const defs = (schema as { $defs?: Record<string, unknown> }).$defs ?? {}
      for (const [name, def] of Object.entries(defs))
        out[`${sharedPrefix}${name}`] = rewriteRefs(def, rename) as JsonSchema
    } else out[id] = rewriteRefs(schema, rename) as JsonSchema
  }
  return out
}
