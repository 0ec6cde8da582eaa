/**
 * A BERT-base-shaped encoder with random weights, T fine-tuned "experts" derived from it with random task vectors,
 * and routing data, written as ordinary build inputs (ONNX files + JSON lines) for `twinserve build`.
 *
 * Shape: input_ids [batch, 128] → word + position embeddings → LayerNorm → 12 post-LN layers (Q/K/V/O 768×768
 * with biases, 12 heads of 64, softmax attention, FFN 768×3072 → GELU (erf form, fused by onnxruntime) →
 * 3072×768, residuals, LayerNorms) → pooler (first token, 768×768, tanh) → classifier 768×4. 85.6M parameters in
 * the encoder's linear layers, as BERT-base; the vocabulary is 8,192 instead of 30,522 (an embedding Gather costs
 * the same at any vocabulary size, and 22M fewer parameters per file keep the 9 cached files at ~3.3 GB).
 *
 * Task vectors: per matrix a rank-8 signal (scale 0.01) plus dense noise (0.001) on top of base weights
 * N(0, 0.02²), as in the merge-engine benchmark, so exclusive knowledge has a spectrum with a head and a tail.
 * Routing data: expert t's token ids come mostly (80%) from its own eighth of the vocabulary, whose embeddings
 * share a centroid, so the shared model's features separate the experts the way real domains do.
 * @module
 */
import { mkdir, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { GraphBuilder } from '@twinserve/gpu-runner/onnx'

export const BERT = {
  layers: 12,
  d: 768,
  heads: 12,
  ff: 3072,
  seq: 128,
  vocab: 8192,
  labels: 4,
} as const

export const BERT_EXPERTS = 8
/** Bump when the generated models change, so cached files are regenerated. */
export const BERT_VERSION = 2

/** Fast approximate normals: a fixed table of Box–Muller samples indexed by xorshift (quality is irrelevant here). */
class NormalTable {
  private static table?: Float32Array
  private state: number
  constructor(seed: number) {
    this.state = (seed * 2654435761) >>> 0 || 1
    if (!NormalTable.table) {
      const t = new Float32Array(1 << 20)
      let s = 12345
      const u = () => {
        s = (Math.imul(s, 1103515245) + 12345) >>> 0
        return (s + 1) / 4294967297
      }
      for (let i = 0; i < t.length; i += 2) {
        const r = Math.sqrt(-2 * Math.log(u()))
        const a = 2 * Math.PI * u()
        t[i] = r * Math.cos(a)
        t[i + 1] = r * Math.sin(a)
      }
      NormalTable.table = t
    }
  }
  fill(out: Float32Array, scale: number, add = false): Float32Array {
    const t = NormalTable.table as Float32Array
    let x = this.state
    for (let i = 0; i < out.length; i++) {
      x ^= x << 13
      x ^= x >>> 17
      x ^= x << 5
      const v = scale * (t[(x >>> 12) & 0xfffff] as number)
      out[i] = add ? (out[i] as number) + v : v
    }
    this.state = x >>> 0 || 1
    return out
  }
}

export interface ParamSpec {
  name: string
  dims: number[]
}

/** Every float parameter of the encoder, in graph order. */
export function bertParams(): ParamSpec[] {
  const { layers, d, ff, seq, vocab, labels } = BERT
  const out: ParamSpec[] = [
    { name: 'embeddings.word', dims: [vocab, d] },
    { name: 'embeddings.position', dims: [seq, d] },
    { name: 'embeddings.ln.gamma', dims: [d] },
    { name: 'embeddings.ln.beta', dims: [d] },
  ]
  for (let l = 0; l < layers; l++) {
    const p = `layer.${l}`
    for (const m of ['q', 'k', 'v', 'o'])
      out.push(
        { name: `${p}.attn.${m}.weight`, dims: [d, d] },
        { name: `${p}.attn.${m}.bias`, dims: [d] },
      )
    out.push(
      { name: `${p}.attn.ln.gamma`, dims: [d] },
      { name: `${p}.attn.ln.beta`, dims: [d] },
      { name: `${p}.ffn.up.weight`, dims: [d, ff] },
      { name: `${p}.ffn.up.bias`, dims: [ff] },
      { name: `${p}.ffn.down.weight`, dims: [ff, d] },
      { name: `${p}.ffn.down.bias`, dims: [d] },
      { name: `${p}.ffn.ln.gamma`, dims: [d] },
      { name: `${p}.ffn.ln.beta`, dims: [d] },
    )
  }
  out.push(
    { name: 'pooler.weight', dims: [d, d] },
    { name: 'pooler.bias', dims: [d] },
    { name: 'classifier.weight', dims: [d, labels] },
    { name: 'classifier.bias', dims: [labels] },
  )
  return out
}

const size = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1)

/** Base parameters: weights N(0, 0.02²), biases 0, LayerNorm gains 1. */
export function baseParams(seed = 1): Map<string, Float32Array> {
  const rng = new NormalTable(seed)
  const out = new Map<string, Float32Array>()
  for (const p of bertParams()) {
    const v = new Float32Array(size(p.dims))
    if (p.name.endsWith('.gamma')) v.fill(1)
    else if (p.dims.length === 2) rng.fill(v, 0.02)
    out.set(p.name, v)
  }
  // Topics: every token of band b (an eighth of the vocabulary) shares a centroid, as words of one domain share
  // directions in a trained embedding. Without it, random embeddings make every domain look alike.
  const words = out.get('embeddings.word') as Float32Array
  const band = Math.floor(BERT.vocab / BERT_EXPERTS)
  const centroid = new Float32Array(BERT.d)
  for (let b = 0; b < BERT_EXPERTS; b++) {
    rng.fill(centroid, 0.02)
    for (let v = b * band; v < (b + 1) * band; v++)
      for (let j = 0; j < BERT.d; j++)
        words[v * BERT.d + j] = (words[v * BERT.d + j] as number) + (centroid[j] as number)
  }
  return out
}

/** Expert t: base + task vector (rank-8 signal + noise on matrices, noise on vectors). */
export function expertParams(
  base: ReadonlyMap<string, Float32Array>,
  t: number,
): Map<string, Float32Array> {
  const rng = new NormalTable(1000 + t)
  const out = new Map<string, Float32Array>()
  const r = 8
  for (const p of bertParams()) {
    const b = base.get(p.name) as Float32Array
    const v = Float32Array.from(b)
    rng.fill(v, 0.001, true)
    if (p.dims.length === 2 && !p.name.startsWith('embeddings.')) {
      const [rows, cols] = p.dims as [number, number]
      const A = rng.fill(new Float32Array(rows * r), 1)
      const B = rng.fill(new Float32Array(r * cols), 0.01 / Math.sqrt(r))
      for (let i = 0; i < rows; i++)
        for (let k = 0; k < r; k++) {
          const a = A[i * r + k] as number
          const row = i * cols
          const bk = k * cols
          for (let j = 0; j < cols; j++)
            v[row + j] = (v[row + j] as number) + a * (B[bk + j] as number)
        }
    }
    out.set(p.name, v)
  }
  return out
}

/** The encoder graph with `params` as initializers. */
export function bertModel(params: ReadonlyMap<string, Float32Array>): Uint8Array {
  const { layers, d, heads, seq, labels } = BERT
  const dh = d / heads
  const g = new GraphBuilder('bert-base-shaped')
    .input('input_ids', 'int64', ['batch', seq])
    .output('logits', 'float', ['batch', labels])
  for (const p of bertParams()) g.float(p.name, params.get(p.name) as Float32Array, p.dims)
  g.int64('heads.shape', [0, 0, heads, dh])
  g.int64('merge.shape', [0, 0, d])
  g.int64('first.index', [0], [])
  g.float('attn.scale', Float32Array.of(1 / Math.sqrt(dh)), [])
  g.float('gelu.half', Float32Array.of(0.5), [])
  g.float('gelu.one', Float32Array.of(1), [])
  g.float('gelu.rsqrt2', Float32Array.of(Math.SQRT1_2), [])
  const ln = (x: string, p: string, name: string, out?: string) =>
    g.node('LayerNormalization', [x, `${p}.gamma`, `${p}.beta`], {
      name,
      attrs: { axis: -1, epsilon: 1e-12 },
      ...(out ? { outputs: [out] } : {}),
    })
  const linear = (x: string, p: string, name: string) =>
    g.node('Add', [g.node('MatMul', [x, `${p}.weight`], { name }), `${p}.bias`], {
      name: `${name}_bias`,
    })

  const words = g.node('Gather', ['embeddings.word', 'input_ids'], {
    name: 'embed_words',
    attrs: { axis: 0 },
  })
  const emb = g.node('Add', [words, 'embeddings.position'], { name: 'embed_positions' }) // [b, s, d]
  let h = ln(emb, 'embeddings.ln', 'embed_ln', 'embeddings.output')
  for (let l = 0; l < layers; l++) {
    const p = `layer.${l}`
    const split = (x: string, perm: number[], name: string) =>
      g.node('Transpose', [g.node('Reshape', [x, 'heads.shape'], { name: `${name}_heads` })], {
        name: `${name}_t`,
        attrs: { perm },
      })
    const q = split(linear(h, `${p}.attn.q`, `${p}.q`), [0, 2, 1, 3], `${p}.q`) // [b, H, s, dh]
    const k = split(linear(h, `${p}.attn.k`, `${p}.k`), [0, 2, 3, 1], `${p}.k`) // [b, H, dh, s]
    const v = split(linear(h, `${p}.attn.v`, `${p}.v`), [0, 2, 1, 3], `${p}.v`) // [b, H, s, dh]
    const scores = g.node(
      'Mul',
      [g.node('MatMul', [q, k], { name: `${p}.scores` }), 'attn.scale'],
      {
        name: `${p}.scaled`,
      },
    )
    const probs = g.node('Softmax', [scores], { name: `${p}.softmax`, attrs: { axis: -1 } })
    const ctx = g.node('MatMul', [probs, v], { name: `${p}.context` }) // [b, H, s, dh]
    const merged = g.node(
      'Reshape',
      [
        g.node('Transpose', [ctx], { name: `${p}.context_t`, attrs: { perm: [0, 2, 1, 3] } }),
        'merge.shape',
      ],
      { name: `${p}.context_merge` },
    ) // [b, s, d]
    const o = linear(merged, `${p}.attn.o`, `${p}.o`)
    h = ln(g.node('Add', [h, o], { name: `${p}.attn_residual` }), `${p}.attn.ln`, `${p}.attn_ln`)
    const up = linear(h, `${p}.ffn.up`, `${p}.up`) // [b, s, ff]
    const erf = g.node('Erf', [g.node('Mul', [up, 'gelu.rsqrt2'], { name: `${p}.gelu_scale` })], {
      name: `${p}.gelu_erf`,
    })
    const gelu = g.node(
      'Mul',
      [
        g.node('Mul', [up, 'gelu.half'], { name: `${p}.gelu_half` }),
        g.node('Add', [erf, 'gelu.one'], { name: `${p}.gelu_add` }),
      ],
      { name: `${p}.gelu` },
    )
    const down = linear(gelu, `${p}.ffn.down`, `${p}.down`)
    h = ln(
      g.node('Add', [h, down], { name: `${p}.ffn_residual` }),
      `${p}.ffn.ln`,
      `${p}.ffn_ln`,
      `${p}.output`,
    )
  }
  const first = g.node('Gather', [h, 'first.index'], { name: 'pool_first', attrs: { axis: 1 } }) // [b, d]
  const pooled = g.node('Tanh', [linear(first, 'pooler', 'pooler')], {
    name: 'pooler_tanh',
    outputs: ['pooled'],
  })
  g.node(
    'Add',
    [g.node('MatMul', [pooled, 'classifier.weight'], { name: 'classifier' }), 'classifier.bias'],
    {
      name: 'classifier_bias',
      outputs: ['logits'],
    },
  )
  return g.build({
    opset: 17,
    metadata: { kind: 'bert-base-shaped', version: String(BERT_VERSION) },
  })
}

export const expertName = (t: number) => `task-${t}`

/** Token ids of one routing example for expert t (80% from its band of the vocabulary). */
export function routingTokens(t: number, example: number, T = BERT_EXPERTS): number[] {
  const band = Math.floor(BERT.vocab / T)
  let s = (t * 7919 + example * 104729 + 17) >>> 0
  const next = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 4294967296
  }
  return Array.from({ length: BERT.seq }, () =>
    next() < 0.8 ? t * band + Math.floor(next() * band) : Math.floor(next() * BERT.vocab),
  )
}

export async function writeAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`
  await writeFile(tmp, data)
  await rename(tmp, path)
}

export interface BertInputs {
  dir: string
  base: string
  experts: { name: string; model: string }[]
  routing: string
}

/**
 * Writes base.onnx, experts/task-<t>.onnx and routing.jsonl into `dir` (each file atomically).
 * @returns the paths
 */
export async function writeBertInputs(
  dir: string,
  opts: { experts?: number; perExpert?: number; log?: (s: string) => void } = {},
): Promise<BertInputs> {
  const T = opts.experts ?? BERT_EXPERTS
  const log = opts.log ?? (() => undefined)
  await mkdir(join(dir, 'experts'), { recursive: true })
  const base = baseParams()
  const basePath = join(dir, 'base.onnx')
  await writeAtomic(basePath, bertModel(base))
  log('base.onnx')
  const experts: { name: string; model: string }[] = []
  for (let t = 0; t < T; t++) {
    const model = join(dir, 'experts', `${expertName(t)}.onnx`)
    await writeAtomic(model, bertModel(expertParams(base, t)))
    experts.push({ name: expertName(t), model })
    log(`experts/${expertName(t)}.onnx`)
  }
  const routing = join(dir, 'routing.jsonl')
  await writeRouting(routing, T, opts.perExpert)
  return { dir, base: basePath, experts, routing }
}

/** Routing data for T experts (`perExpert` examples each, interleaved), written atomically. */
export async function writeRouting(path: string, T: number, perExpert = 20): Promise<void> {
  const lines: string[] = []
  for (let i = 0; i < perExpert; i++)
    for (let t = 0; t < T; t++)
      lines.push(
        JSON.stringify({ expert: expertName(t), inputs: { input_ids: routingTokens(t, i, T) } }),
      )
  await writeAtomic(path, `${lines.join('\n')}\n`)
}
