/**
 * Small generated models for the builder's tests, shaped like what real exporters emit:
 * - an MLP: Gemm (transA=1 on a transposed input) → Relu → MatMul + Add → Relu → Gemm (transB=1, weight stored
 *   [out, in], alpha and beta ≠ 1);
 * - a pre-LN transformer block: LayerNormalization, attention MatMuls with Q and K sharing one weight (an
 *   initializer shared by two nodes), V's weight behind a Transpose, a layer-scale Mul, a feed-forward on rows
 *   flattened to [batch·seq, d] through Gemm transB=1, and a head tied to the input embedding (the same
 *   initializer used directly and transposed).
 * Parameters come from a provider, so experts are the base plus seeded changes with the same graph.
 * @module
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import YAML from 'yaml'
import { decodeModel, elementCount, tensorDims } from '../src/build/import/read-onnx.ts'
import { GraphBuilder } from '../src/onnx/graph-builder.ts'
import { type ITensorProto, onnx, TensorDataType } from '../src/onnx/proto.ts'

export type ParamProvider = (name: string, dims: readonly number[]) => Float32Array

/** Deterministic normal samples (mulberry32 + Box–Muller). */
export function seededNormal(seed: number): () => number {
  let a = seed >>> 0
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return () => {
    const u = Math.max(uniform(), 1e-12)
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * uniform())
  }
}

function nameSeed(name: string): number {
  let h = 2166136261
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619)
  return h >>> 0
}

/** Base parameters: N(0, scale²), seeded per (seed, name); vectors named like LayerNorm gains centred on 1. */
export function randomParams(seed: number, scale = 0.3): ParamProvider {
  return (name, dims) => {
    const rand = seededNormal(seed * 7919 + nameSeed(name))
    const n = elementCount(dims)
    const out = new Float32Array(n)
    const centre = /gamma|scale/.test(name) ? 1 : 0
    for (let i = 0; i < n; i++) out[i] = centre + scale * rand()
    return out
  }
}

/** An expert: the base plus seeded N(0, scale²) changes in every parameter. */
export function perturbedParams(base: ParamProvider, seed: number, scale = 0.05): ParamProvider {
  return (name, dims) => {
    const b = base(name, dims)
    const rand = seededNormal(seed * 104729 + nameSeed(name))
    return b.map((x) => x + scale * rand())
  }
}

export const MLP_SIZES = { dIn: 8, h1: 16, h2: 12, dOut: 4 } as const

export function mlpModel(param: ParamProvider, opset?: number): Uint8Array {
  const { dIn, h1, h2, dOut } = MLP_SIZES
  const g = new GraphBuilder('test-mlp')
    .input('x', 'float', ['batch', dIn])
    .output('logits', 'float', ['batch', dOut])
    .float('fc1.weight', param('fc1.weight', [dIn, h1]), [dIn, h1])
    .float('fc1.bias', param('fc1.bias', [h1]), [h1])
    .float('fc2.weight', param('fc2.weight', [h1, h2]), [h1, h2])
    .float('fc2.bias', param('fc2.bias', [h2]), [h2])
    .float('head.weight', param('head.weight', [dOut, h2]), [dOut, h2]) // stored [out, in]
    .float('head.bias', param('head.bias', [dOut]), [dOut])
  // Gemm transA=1 on a transposed input, as some exporters emit for batch-first data.
  const xT = g.node('Transpose', ['x'], { name: 'x_t', attrs: { perm: [1, 0] } })
  const a1 = g.node('Gemm', [xT, 'fc1.weight', 'fc1.bias'], { name: 'fc1', attrs: { transA: 1 } })
  const r1 = g.node('Relu', [a1], { name: 'relu1' })
  const m2 = g.node('MatMul', [r1, 'fc2.weight'], { name: 'fc2' })
  const a2 = g.node('Add', [m2, 'fc2.bias'], { name: 'fc2_bias' })
  const r2 = g.node('Relu', [a2], { name: 'relu2' })
  g.node('Gemm', [r2, 'head.weight', 'head.bias'], {
    name: 'head',
    outputs: ['logits'],
    attrs: { transB: 1, alpha: 0.5, beta: 1.5 },
  })
  return g.build({ metadata: { kind: 'test-mlp' }, ...(opset ? { opset } : {}) })
}

export const BLOCK_SIZES = { vocab: 6, d: 8, ff: 16, seq: 5 } as const

export function transformerModel(param: ParamProvider): Uint8Array {
  const { vocab, d, ff } = BLOCK_SIZES
  const g = new GraphBuilder('test-block')
    .input('x', 'float', ['batch', 'seq', vocab])
    .output('logits', 'float', ['batch', vocab])
  const p = (name: string, dims: number[]) => {
    g.float(name, param(name, dims), dims)
    return name
  }
  p('embed.weight', [vocab, d])
  p('ln1.gamma', [d])
  p('ln1.beta', [d])
  p('attn.qk.weight', [d, d])
  p('attn.v.weight', [d, d]) // stored [out, in], used through a Transpose node
  p('attn.o.weight', [d, d])
  p('attn.o.bias', [d])
  p('attn.layer_scale', [d])
  p('ln2.gamma', [d])
  p('ln2.beta', [d])
  p('ffn.up.weight', [ff, d]) // Gemm transB=1
  p('ffn.up.bias', [ff])
  p('ffn.down.weight', [d, ff]) // Gemm transB=1
  p('ffn.down.bias', [d])
  g.float('attn.scale', Float32Array.of(1 / Math.sqrt(d)), [])
  g.int64('rows.shape', [-1, d])

  const h0 = g.node('MatMul', ['x', 'embed.weight'], { name: 'embed' }) // [b, s, d]
  const n1 = g.node('LayerNormalization', [h0, 'ln1.gamma', 'ln1.beta'], {
    name: 'ln1',
    attrs: { axis: -1, epsilon: 1e-5 },
  })
  const q = g.node('MatMul', [n1, 'attn.qk.weight'], { name: 'attn_q' })
  const k = g.node('MatMul', [n1, 'attn.qk.weight'], { name: 'attn_k' })
  const vT = g.node('Transpose', ['attn.v.weight'], { name: 'attn_v_t', attrs: { perm: [1, 0] } })
  const v = g.node('MatMul', [n1, vT], { name: 'attn_v' })
  const kT = g.node('Transpose', [k], { name: 'attn_k_t', attrs: { perm: [0, 2, 1] } })
  const scores = g.node('Mul', [g.node('MatMul', [q, kT], { name: 'attn_scores' }), 'attn.scale'], {
    name: 'attn_scaled',
  })
  const probs = g.node('Softmax', [scores], { name: 'attn_softmax', attrs: { axis: -1 } })
  const ctx = g.node('MatMul', [probs, v], { name: 'attn_ctx' })
  const o = g.node(
    'Add',
    [g.node('MatMul', [ctx, 'attn.o.weight'], { name: 'attn_o' }), 'attn.o.bias'],
    {
      name: 'attn_o_bias',
    },
  )
  const os = g.node('Mul', [o, 'attn.layer_scale'], { name: 'attn_layer_scale' })
  const h1 = g.node('Add', [h0, os], { name: 'residual1' })
  const n2 = g.node('LayerNormalization', [h1, 'ln2.gamma', 'ln2.beta'], {
    name: 'ln2',
    attrs: { axis: -1, epsilon: 1e-5 },
  })
  const rows = g.node('Reshape', [n2, 'rows.shape'], { name: 'to_rows' }) // [b·s, d]
  const up = g.node('Gemm', [rows, 'ffn.up.weight', 'ffn.up.bias'], {
    name: 'ffn_up',
    attrs: { transB: 1 },
  })
  const act = g.node('Relu', [up], { name: 'ffn_relu' })
  const down = g.node('Gemm', [act, 'ffn.down.weight', 'ffn.down.bias'], {
    name: 'ffn_down',
    attrs: { transB: 1 },
  })
  const back = g.node('Reshape', [down, g.node('Shape', [h1], { name: 'block_shape' })], {
    name: 'to_block',
  })
  const h2 = g.node('Add', [h1, back], { name: 'residual2' })
  const pooled = g.node('ReduceMean', [h2], { name: 'pool', attrs: { axes: [1], keepdims: 0 } }) // [b, d]
  const eT = g.node('Transpose', ['embed.weight'], { name: 'head_t', attrs: { perm: [1, 0] } })
  g.node('MatMul', [pooled, eT], { name: 'head', outputs: ['logits'] }) // tied head
  return g.build({ metadata: { kind: 'test-block' } })
}

/**
 * Rewrites a model so that every float initializer with at least `minElements` values lives in `<file>.data`
 * next to it (ONNX external data: location, offset, length), as exporters do for large models.
 */
export async function writeWithExternalData(
  bytes: Uint8Array,
  dir: string,
  file: string,
  minElements = 1,
): Promise<string> {
  const model = decodeModel(bytes, file)
  const chunks: Uint8Array[] = []
  let offset = 0
  const dataFile = `${file}.data`
  for (const t of model.graph?.initializer ?? []) {
    const tensor = t as ITensorProto
    if (tensor.dataType !== TensorDataType.FLOAT || elementCount(tensorDims(tensor)) < minElements)
      continue
    const raw = tensor.rawData ?? new Uint8Array()
    chunks.push(raw)
    tensor.externalData = [
      { key: 'location', value: dataFile },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(raw.byteLength) },
    ]
    tensor.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL
    tensor.rawData = new Uint8Array()
    offset += raw.byteLength
  }
  await mkdir(dir, { recursive: true })
  const data = new Uint8Array(offset)
  let at = 0
  for (const c of chunks) {
    data.set(c, at)
    at += c.byteLength
  }
  await writeFile(join(dir, dataFile), data)
  const path = join(dir, file)
  await writeFile(path, onnx.ModelProto.encode(model).finish())
  return path
}

export interface BuildFixture {
  dir: string
  recipePath: string
  base: string
  experts: { name: string; model: string }[]
  routing: string
  params: { base: ParamProvider; experts: ParamProvider[] }
}

/**
 * Writes a complete build input to `dir`: base and expert ONNX files of the MLP or the transformer block,
 * routing data where each expert's examples are shifted along their own input coordinates (so a router can
 * learn them), and a recipe (YAML) with `recipe` merged over defaults.
 */
export async function writeBuildFixture(
  dir: string,
  opts: {
    kind?: 'mlp' | 'block'
    experts?: number
    perExpert?: number
    recipe?: Record<string, unknown>
    seed?: number
    /** The MLP's ONNX opset (default 17). */
    opset?: number
  } = {},
): Promise<BuildFixture> {
  const kind = opts.kind ?? 'mlp'
  const T = opts.experts ?? 3
  const build = kind === 'mlp' ? (p: ParamProvider) => mlpModel(p, opts.opset) : transformerModel
  const seed = opts.seed ?? 1
  const base = randomParams(seed)
  const experts = Array.from({ length: T }, (_, t) =>
    perturbedParams(base, seed * 100 + t + 1, 0.1),
  )
  await mkdir(join(dir, 'experts'), { recursive: true })
  await writeFile(join(dir, 'base.onnx'), build(base))
  const names = Array.from({ length: T }, (_, t) => `task-${String.fromCharCode(97 + t)}`)
  for (const [t, p] of experts.entries())
    await writeFile(join(dir, 'experts', `${names[t]}.onnx`), build(p))
  const perExample = kind === 'mlp' ? MLP_SIZES.dIn : BLOCK_SIZES.seq * BLOCK_SIZES.vocab
  const width = kind === 'mlp' ? MLP_SIZES.dIn : BLOCK_SIZES.vocab
  const rand = seededNormal(seed + 17)
  const lines: string[] = []
  for (let i = 0; i < (opts.perExpert ?? 40); i++)
    for (let t = 0; t < T; t++) {
      const x = Array.from({ length: perExample }, (_, k) => {
        const shifted = k % width === t % width ? 2 : 0
        return Math.round((shifted + 0.5 * rand()) * 1000) / 1000
      })
      lines.push(JSON.stringify({ expert: names[t], inputs: { x } }))
    }
  await writeFile(join(dir, 'routing.jsonl'), `${lines.join('\n')}\n`)
  const recipe = {
    name: `test-${kind}`,
    base: 'base.onnx',
    experts: names.map((name) => ({ name, model: `experts/${name}.onnx` })),
    exclusive: { rank: 2 },
    router: { data: 'routing.jsonl', hidden: [16], epochs: 20, lr: 0.01, batch_size: 16, seed: 1 },
    variants: [{ name: 'ties', shared: { method: 'ties', density: 0.5 } }],
    verify: { examples_per_expert: 4 },
    ...opts.recipe,
  }
  const recipePath = join(dir, 'recipe.yaml')
  await writeFile(recipePath, YAML.stringify(recipe))
  return {
    dir,
    recipePath,
    base: join(dir, 'base.onnx'),
    experts: names.map((name) => ({ name, model: join(dir, 'experts', `${name}.onnx`) })),
    routing: join(dir, 'routing.jsonl'),
    params: { base, experts },
  }
}
