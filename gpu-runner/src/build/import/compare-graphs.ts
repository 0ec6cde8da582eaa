/**
 * Checks that an expert has the base model's graph: same inputs and outputs, same nodes in the same order (name,
 * op type, domain, wiring, attributes), same initializers (names, types, shapes, and equal values for
 * non-float ones such as Reshape shapes). The first difference is named, so a user can find it in Netron.
 * Float initializer VALUES may differ: that is what fine-tuning changes.
 * @module
 */
import { createHash } from 'node:crypto'
import { AppError } from '@twinserve/shared'
import type {
  IAttributeProto,
  INodeProto,
  ITensorProto,
  IValueInfoProto,
} from '../../onnx/proto.ts'
import { TensorDataType, toNumber } from '../../onnx/proto.ts'
import { type OnnxModel, tensorDims } from './read-onnx.ts'

function describeValueInfo(v: IValueInfoProto): string {
  const t = v.type?.tensorType
  const dims = (t?.shape?.dim ?? []).map((d) =>
    d.dimParam ? d.dimParam : d.dimValue != null ? String(toNumber(d.dimValue)) : '?',
  )
  return `${v.name} (type ${t?.elemType ?? '?'}, [${dims.join(',')}])`
}

/** A canonical string for an attribute (tensor attributes by their encoded bytes). */
function describeAttribute(a: IAttributeProto, encodeTensor: (t: ITensorProto) => string): string {
  const parts = [
    a.name,
    String(a.type ?? ''),
    a.i != null ? String(toNumber(a.i)) : '',
    a.f != null ? String(a.f) : '',
    a.s ? new TextDecoder().decode(a.s) : '',
    (a.ints ?? []).map((x) => toNumber(x)).join(','),
    (a.floats ?? []).join(','),
    (a.strings ?? []).map((s) => new TextDecoder().decode(s)).join(','),
    a.t ? encodeTensor(a.t) : '',
    a.g ? `graph:${a.g.name}:${(a.g.node ?? []).length}` : '',
  ]
  return parts.join('|')
}

function compareNode(
  i: number,
  a: INodeProto,
  b: INodeProto,
  encodeTensor: (t: ITensorProto) => string,
): string | null {
  const where = `node ${i} ('${a.name ?? ''}')`
  if ((a.name ?? '') !== (b.name ?? '')) return `node ${i}: name '${a.name}' vs '${b.name}'`
  if (a.opType !== b.opType) return `${where}: op type ${a.opType} vs ${b.opType}`
  if ((a.domain ?? '') !== (b.domain ?? ''))
    return `${where}: domain '${a.domain}' vs '${b.domain}'`
  const ai = (a.input ?? []).join(', ')
  const bi = (b.input ?? []).join(', ')
  if (ai !== bi) return `${where}: inputs [${ai}] vs [${bi}]`
  const ao = (a.output ?? []).join(', ')
  const bo = (b.output ?? []).join(', ')
  if (ao !== bo) return `${where}: outputs [${ao}] vs [${bo}]`
  const aa = new Map(
    (a.attribute ?? []).map((x) => [x.name ?? '', describeAttribute(x, encodeTensor)]),
  )
  const ba = new Map(
    (b.attribute ?? []).map((x) => [x.name ?? '', describeAttribute(x, encodeTensor)]),
  )
  for (const [name, desc] of aa) {
    if (!ba.has(name)) return `${where}: attribute '${name}' is missing in the expert`
    if (ba.get(name) !== desc)
      return `${where}: attribute '${name}' differs${name === 'value' ? ' (weights inside Constant nodes are not supported: export them as initializers)' : ''}`
  }
  for (const name of ba.keys())
    if (!aa.has(name)) return `${where}: the expert has an extra attribute '${name}'`
  return null
}

/** The first difference between two graphs' structure, or null when the expert has the base's graph. */
export function firstGraphDifference(base: OnnxModel, expert: OnnxModel): string | null {
  const a = base.graph
  const b = expert.graph
  // Tensors compare by a digest of their data: Constant nodes can hold large weights.
  const encodeTensor = (t: ITensorProto) =>
    createHash('sha256')
      .update(`${t.dataType}:${tensorDims(t).join('x')}:`)
      .update(t.rawData ?? new Uint8Array())
      .update(
        `:${(t.floatData ?? []).join(',')}:${(t.int64Data ?? []).map((x) => toNumber(x)).join(',')}:${(t.int32Data ?? []).join(',')}`,
      )
      .digest('hex')
  for (const [kind, xs, ys] of [
    ['input', a.input ?? [], b.input ?? []],
    ['output', a.output ?? [], b.output ?? []],
  ] as const) {
    if (xs.length !== ys.length) return `${xs.length} graph ${kind}s vs ${ys.length}`
    for (let i = 0; i < xs.length; i++) {
      const x = describeValueInfo(xs[i] as IValueInfoProto)
      const y = describeValueInfo(ys[i] as IValueInfoProto)
      if (x !== y) return `graph ${kind} ${i}: ${x} vs ${y}`
    }
  }
  const an = a.node ?? []
  const bn = b.node ?? []
  const n = Math.min(an.length, bn.length)
  for (let i = 0; i < n; i++) {
    const d = compareNode(i, an[i] as INodeProto, bn[i] as INodeProto, encodeTensor)
    if (d) return d
  }
  if (an.length !== bn.length)
    return `${an.length} nodes vs ${bn.length} (first extra: '${(an[n] ?? bn[n])?.name ?? ''}')`
  for (const [name, t] of base.initializers) {
    const u = expert.initializers.get(name)
    if (!u) return `initializer '${name}' is missing in the expert`
    if (t.dataType !== u.dataType)
      return `initializer '${name}': data type ${t.dataType} vs ${u.dataType}`
    const ad = tensorDims(t).join(',')
    const bd = tensorDims(u).join(',')
    if (ad !== bd) return `initializer '${name}': shape [${ad}] vs [${bd}]`
    if (t.dataType !== TensorDataType.FLOAT && encodeTensor(t) !== encodeTensor(u))
      return `initializer '${name}' (non-float, e.g. a shape) has different values`
  }
  for (const name of expert.initializers.keys())
    if (!base.initializers.has(name)) return `the expert has an extra initializer '${name}'`
  return null
}

/** Throws INCOMPATIBLE_EXPERTS naming the expert and the first difference. */
export function assertSameGraph(base: OnnxModel, expert: OnnxModel, expertName: string): void {
  const diff = firstGraphDifference(base, expert)
  if (diff)
    throw new AppError(
      'INCOMPATIBLE_EXPERTS',
      `expert '${expertName}' (${expert.path}) does not have the base model's graph (${base.path}): ${diff}`,
    )
}
