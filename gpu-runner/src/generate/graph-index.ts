/**
 * Who makes and who reads each value of a graph, and a topological reordering: what the load-time rewrites of the
 * decode graph (decode-graph.ts) match their patterns with.
 * @module
 */
import type { IGraphProto, INodeProto, ITensorProto } from '../onnx/proto.ts'
import { nodeReads } from './likelihood-graph.ts'

export interface GraphIndex {
  producer: Map<string, INodeProto>
  /** Value → the nodes that read it (a node once per input slot); graph outputs are counted in `outputs`. */
  readers: Map<string, INodeProto[]>
  outputs: Set<string>
  inits: Map<string, ITensorProto>
}

export function indexGraph(graph: IGraphProto): GraphIndex {
  const producer = new Map<string, INodeProto>()
  const readers = new Map<string, INodeProto[]>()
  for (const n of graph.node ?? []) {
    for (const o of n.output ?? []) producer.set(o, n)
    for (const r of nodeReads(n)) {
      const list = readers.get(r)
      if (list) list.push(n)
      else readers.set(r, [n])
    }
  }
  return {
    producer,
    readers,
    outputs: new Set((graph.output ?? []).map((o) => o.name ?? '')),
    inits: new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t])),
  }
}

/** The one node that reads `name`, when exactly one does (and it is not a graph output). */
export function soleReader(ix: GraphIndex, name: string): INodeProto | undefined {
  const r = ix.readers.get(name) ?? []
  return r.length === 1 && !ix.outputs.has(name) ? r[0] : undefined
}

/** A name not yet used in the graph, from `base`. */
export function freshNamer(graph: IGraphProto): (base: string) => string {
  const taken = new Set([
    ...(graph.initializer ?? []).map((t) => t.name ?? ''),
    ...(graph.input ?? []).map((t) => t.name ?? ''),
    ...(graph.node ?? []).flatMap((n) => [...(n.output ?? []), n.name ?? '']),
  ])
  return (base) => {
    let name = base
    for (let k = 1; taken.has(name); k++) name = `${base}_${k}`
    taken.add(name)
    return name
  }
}

/**
 * Orders the nodes so that each comes after the nodes making what it reads (its subgraphs' reads included), keeping
 * the given order wherever it already is one: rewrites append nodes that earlier nodes now read.
 */
export function sortTopologically(graph: IGraphProto): void {
  const nodes = graph.node ?? []
  const producer = new Map<string, number>()
  nodes.forEach((n, i) => {
    for (const o of n.output ?? []) producer.set(o, i)
  })
  const state = new Uint8Array(nodes.length) // 0 unseen, 1 on the stack, 2 placed
  const out: INodeProto[] = []
  // Depth first without recursion (a deep graph would overflow the call stack): [node, its producers left].
  for (let root = 0; root < nodes.length; root++) {
    if (state[root] === 2) continue
    const stack: [number, number[]][] = [[root, producersOf(root)]]
    state[root] = 1
    while (stack.length > 0) {
      const top = stack[stack.length - 1] as [number, number[]]
      const p = top[1].pop()
      if (p === undefined) {
        stack.pop()
        state[top[0]] = 2
        out.push(nodes[top[0]] as INodeProto)
      } else if (state[p] === 1)
        throw new Error(`the graph has a cycle through node ${nodes[p]?.name}`)
      else if (state[p] === 0) {
        state[p] = 1
        stack.push([p, producersOf(p)])
      }
    }
  }
  graph.node = out

  /** The nodes making what node i reads, last first (popped in reading order). */
  function producersOf(i: number): number[] {
    const ps: number[] = []
    for (const r of nodeReads(nodes[i] as INodeProto)) {
      const p = producer.get(r)
      if (p !== undefined && p !== i) ps.push(p)
    }
    return ps.reverse()
  }
}
