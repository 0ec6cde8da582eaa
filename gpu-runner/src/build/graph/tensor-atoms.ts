/**
 * Where the batch sits in a tensor, as the batch tracking (batch-axes.ts) carries it from node to node. Each axis
 * is a list of *atoms*, outer to inner: the sizes flattened into it, with the batch as one atom of its own. A
 * `[seq, batch, d]` tensor is `[[seq], [B], [d]]`; reshaped to `[seq·batch, d]` it is `[[seq, B], [d]]`, and to
 * `[batch·heads, seq, head_dim]` after a transpose `[[B, heads], [seq], [head_dim]]`. Sizes are those of one probe
 * run; `fixed` says whether a size is the same at every input size (a weight's width, a head count) or follows
 * the inputs (a sequence length), which decides how the twin graph finds it at run time.
 * @module
 */

export interface Atom {
  /** Size in the probe run. */
  size: number
  /** True when the size does not depend on the inputs' sizes. */
  fixed: boolean
  /** The batch itself. */
  batch?: true
}

export interface TensorInfo {
  /** Dims in the probe run. */
  dims: number[]
  /** Per axis, the atoms flattened into it, outer to inner (product = the dim). */
  axes: Atom[][]
  /** ONNX element type. */
  elem: number
  /** Set when the tensor carries rows of different examples mixed in a way that cannot be tracked. */
  lost?: string
}

/** A size and whether it is the same at every input size. */
export interface Extent {
  size: number
  fixed: boolean
}

const product = (xs: readonly number[]) => xs.reduce((a, b) => a * b, 1)

/** A tensor without a batch: one atom per axis. */
export function plainInfo(
  dims: readonly number[],
  elem: number,
  fixed: boolean | boolean[],
): TensorInfo {
  return {
    dims: [...dims],
    axes: dims.map((size, i) => [
      { size, fixed: size === 1 || (typeof fixed === 'boolean' ? fixed : (fixed[i] ?? false)) },
    ]),
    elem,
  }
}

export function lostInfo(dims: readonly number[], elem: number, reason: string): TensorInfo {
  return { ...plainInfo(dims, elem, false), lost: reason }
}

export function hasBatch(t: TensorInfo): boolean {
  return t.axes.some((a) => a.some((x) => x.batch))
}

/** True when every atom of the axis is fixed. */
export const axisFixed = (atoms: readonly Atom[]) => atoms.every((a) => a.fixed || a.size === 1)

/** The product of atoms as one extent. */
function extent(atoms: readonly Atom[]): Extent {
  return { size: product(atoms.map((a) => a.size)), fixed: axisFixed(atoms) }
}

/** The batch's axis and the extents flattened into it outside and inside the batch, if the tensor has one. */
export function batchAxisOf(
  t: TensorInfo,
): { axis: number; outer: Extent; inner: Extent } | undefined {
  for (const [axis, atoms] of t.axes.entries()) {
    const at = (atoms ?? []).findIndex((a) => a.batch)
    if (at < 0) continue
    return { axis, outer: extent(atoms.slice(0, at)), inner: extent(atoms.slice(at + 1)) }
  }
  return undefined
}

/**
 * The atoms of a tensor viewed with new dims in the same row-major order (Reshape, Flatten, Squeeze, Unsqueeze).
 * The batch must land inside one new axis whole: the stride of its atom and its extent must fit between that
 * axis's inner stride and outer end. Otherwise the view splits the batch across axes and the rows are lost.
 */
export function reshapeInfo(input: TensorInfo, dims: readonly number[], what: string): TensorInfo {
  const elem = input.elem
  if (input.lost) return lostInfo(dims, elem, input.lost)
  const atoms = input.axes.flat().filter((a) => a.size !== 1 || a.batch)
  const total = product(atoms.map((a) => a.size))
  const batched = atoms.some((a) => a.batch)
  if (total === 0 || total !== product(dims))
    return batched
      ? lostInfo(dims, elem, `${what} views an empty or mismatched tensor`)
      : plainInfo(dims, elem, false)
  const stride: number[] = []
  let p = 1
  for (let k = atoms.length - 1; k >= 0; k--) {
    stride[k] = p
    p *= (atoms[k] as Atom).size
  }
  // Fixed when every input atom overlapping the stride range [lo, hi) is fixed.
  const fixedIn = (lo: number, hi: number) =>
    atoms.every((a, k) => {
      const s = stride[k] as number
      return a.fixed || a.batch === true || !(s < hi && s * a.size > lo)
    })
  const outStride: number[] = []
  p = 1
  for (let j = dims.length - 1; j >= 0; j--) {
    outStride[j] = p
    p *= dims[j] as number
  }
  const kb = atoms.findIndex((a) => a.batch)
  const axes: Atom[][] = dims.map((d, j) => {
    const lo = outStride[j] as number
    return [{ size: d, fixed: d === 1 || fixedIn(lo, lo * d) }]
  })
  if (kb < 0) return { dims: [...dims], axes, elem }
  const S = stride[kb] as number
  const B = (atoms[kb] as Atom).size
  const j = dims.findIndex((d, i) => {
    const T = outStride[i] as number
    return d > 1 && T <= S && S * B <= T * d && S % T === 0 && (T * d) % (S * B) === 0
  })
  if (j < 0)
    return lostInfo(
      dims,
      elem,
      `${what} splits the batch across axes ([${input.dims.join(',')}] → [${dims.join(',')}])`,
    )
  const T = outStride[j] as number
  const d = dims[j] as number
  const inner = S / T
  const outer = (d * T) / (S * B)
  axes[j] = [
    ...(outer > 1 ? [{ size: outer, fixed: fixedIn(S * B, T * d) }] : []),
    atoms[kb] as Atom,
    ...(inner > 1 ? [{ size: inner, fixed: fixedIn(T, S) }] : []),
  ]
  return { dims: [...dims], axes, elem }
}

const sameAtoms = (a: readonly Atom[], b: readonly Atom[]) =>
  a.length === b.length && a.every((x, i) => x.size === b[i]?.size && !!x.batch === !!b[i]?.batch)

/** The output of a broadcasting elementwise op (numpy rules, aligned from the last axis). */
export function broadcastInfo(
  inputs: readonly TensorInfo[],
  elem: number,
  what: string,
): TensorInfo {
  const rank = Math.max(0, ...inputs.map((t) => t.dims.length))
  const dims: number[] = []
  const axes: Atom[][] = []
  for (let i = 0; i < rank; i++) {
    const at = inputs.map((t) => {
      const k = i - (rank - t.dims.length)
      return k < 0 ? undefined : { dim: t.dims[k] ?? 0, atoms: t.axes[k] ?? [] }
    })
    const d = Math.max(...at.map((x) => x?.dim ?? 1))
    dims.push(d)
    const full = at.filter(
      (x): x is { dim: number; atoms: Atom[] } => x !== undefined && x.dim === d,
    )
    const withBatch = full.filter((x) => x.atoms.some((a) => a.batch))
    const first = withBatch[0] ?? full[0]
    if (withBatch.some((x) => !sameAtoms(x.atoms, withBatch[0]?.atoms ?? [])))
      return lostInfo(
        dims.concat(Array(rank - i - 1).fill(1)),
        elem,
        `${what} combines different batch layouts`,
      )
    if (!first || d === 1) axes.push([{ size: d, fixed: true }])
    else if (withBatch.length > 0) axes.push(first.atoms)
    // A size one operand fixes is fixed (broadcasting needs the others to equal it).
    else axes.push([{ size: d, fixed: full.some((x) => axisFixed(x.atoms)) }])
  }
  const lost = inputs.find((t) => t.lost)?.lost
  const out: TensorInfo = { dims, axes, elem }
  return lost ? { ...out, lost } : out
}
