/**
 * Edits a decoded ONNX graph: appends nodes and initializers under fresh, prefixed names, and puts the node list
 * back in topological order at the end (ONNX requires it, and inserted nodes are appended wherever convenient).
 * The rewrites build on this instead of GraphBuilder because they start from an existing graph.
 * @module
 */
import { AppError } from '@twinserve/shared'
import type onnxProto from 'onnx-proto'
import { type AttrValue, floatTensor, int64Tensor, toAttribute } from '../../onnx/graph-builder.ts'
import type { INodeProto, ITensorProto } from '../../onnx/proto.ts'

type IGraphProto = onnxProto.onnx.IGraphProto

/** Tensors a node's subgraphs (If/Loop/Scan bodies) read from the enclosing scope. */
export function outerInputs(node: INodeProto): string[] {
  const out: string[] = []
  for (const a of node.attribute ?? [])
    for (const g of [...(a.g ? [a.g] : []), ...(a.graphs ?? [])]) {
      const local = new Set<string>([
        ...(g.input ?? []).map((v) => v.name ?? ''),
        ...(g.initializer ?? []).map((t) => t.name ?? ''),
      ])
      for (const n of g.node ?? []) {
        for (const x of [...(n.input ?? []), ...outerInputs(n)]) if (x && !local.has(x)) out.push(x)
        for (const o of n.output ?? []) local.add(o)
      }
    }
  return out
}

export class GraphEditor {
  private counter = 0
  private readonly taken: Set<string>

  constructor(
    readonly graph: IGraphProto,
    private readonly prefix = 'twin/',
  ) {
    this.taken = new Set<string>()
    for (const n of graph.node ?? []) {
      for (const o of n.output ?? []) this.taken.add(o)
      if (n.name) this.taken.add(n.name)
    }
    for (const t of graph.initializer ?? []) this.taken.add(t.name ?? '')
    for (const v of [...(graph.input ?? []), ...(graph.output ?? [])]) this.taken.add(v.name ?? '')
  }

  /** A name no tensor or node in the graph has. */
  fresh(hint: string): string {
    let name = `${this.prefix}${hint}`
    while (this.taken.has(name)) name = `${this.prefix}${hint}_${this.counter++}`
    this.taken.add(name)
    return name
  }

  /** Claims an exact name (e.g. a convention name like `<w>.twin_u`); fails if it is taken. */
  claim(name: string): string {
    if (this.taken.has(name))
      throw new AppError('INVALID_MODEL', `the base graph already has a tensor named '${name}'`)
    this.taken.add(name)
    return name
  }

  node(
    opType: string,
    inputs: readonly string[],
    opts: { outputs?: readonly string[]; attrs?: Record<string, AttrValue>; hint?: string } = {},
  ): string {
    const hint = opts.hint ?? opType.toLowerCase()
    const outputs = opts.outputs ?? [this.fresh(hint)]
    this.graph.node = [
      ...(this.graph.node ?? []),
      {
        name: this.fresh(`${hint}_node`),
        opType,
        domain: '',
        input: [...inputs],
        output: [...outputs],
        attribute: Object.entries(opts.attrs ?? {}).map(([k, v]) => toAttribute(k, v)),
      },
    ]
    return outputs[0] as string
  }

  /** Adds an already-built node (e.g. a copy of an original one). */
  addNode(node: INodeProto): void {
    for (const o of node.output ?? []) this.taken.add(o)
    this.graph.node = [...(this.graph.node ?? []), node]
  }

  initializer(t: ITensorProto): string {
    this.graph.initializer = [...(this.graph.initializer ?? []), t]
    return t.name ?? ''
  }

  float(hint: string, data: Float32Array, dims: readonly number[], exact = false): string {
    return this.initializer(floatTensor(exact ? this.claim(hint) : this.fresh(hint), data, dims))
  }

  int64(
    hint: string,
    data: readonly number[],
    dims: readonly number[] = [data.length],
    exact = false,
  ): string {
    return this.initializer(int64Tensor(exact ? this.claim(hint) : this.fresh(hint), data, dims))
  }

  /**
   * Reorders graph.node topologically, keeping the existing order wherever it is already valid. A node with
   * subgraphs (`If`) also depends on the outer-scope tensors its subgraphs read.
   */
  sortTopologically(): void {
    const nodes = this.graph.node ?? []
    const producer = new Map<string, number>()
    nodes.forEach((n, i) => {
      for (const o of n.output ?? []) if (o) producer.set(o, i)
    })
    const deps = nodes.map(
      (n) =>
        new Set(
          [...(n.input ?? []), ...outerInputs(n)]
            .map((x) => producer.get(x))
            .filter((p): p is number => p !== undefined),
        ),
    )
    const users = nodes.map(() => [] as number[])
    deps.forEach((ds, i) => {
      for (const d of ds) users[d]?.push(i)
    })
    const pending = deps.map((d) => d.size)
    // A min-heap would be O(n log n); graphs here are small enough that scanning for the lowest ready index
    // (which keeps the original order stable) is fine.
    const ready = new Set<number>()
    pending.forEach((p, i) => {
      if (p === 0) ready.add(i)
    })
    const order: number[] = []
    while (ready.size > 0) {
      const next = Math.min(...ready)
      ready.delete(next)
      order.push(next)
      for (const u of users[next] ?? []) {
        pending[u] = (pending[u] ?? 0) - 1
        if (pending[u] === 0) ready.add(u)
      }
    }
    if (order.length !== nodes.length)
      throw new AppError(
        'INVALID_MODEL',
        'the rewritten graph has a cycle (internal error in the twin rewrite)',
      )
    this.graph.node = order.map((i) => nodes[i] as INodeProto)
  }
}
