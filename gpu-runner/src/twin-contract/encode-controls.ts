/**
 * The one encoder of the twin graph's control inputs (TWIN_INPUTS in shared/src/schemas/twin-package.ts): rows of
 * controls in, one onnxruntime tensor per control out. Every caller that runs a twin graph (the runner, the
 * builder's verification, the benchmarks, tests) goes through it, so a new control needs no change here.
 * @module
 */
import { AppError, TWIN_INPUTS, type TwinInputKey, type TwinInputSpec } from '@twinserve/shared'
import { ort } from '../runtime/ort-session.ts'

type Specs = typeof TWIN_INPUTS

/** A row's value of one control: T values for [batch, T] controls, one for [batch, 1]. */
type RowValue<S extends TwinInputSpec> = S['dims'][1] extends 'T' ? ArrayLike<number> : number

/** One row's controls; a control left out gets its spec's `absent` value. */
export type RowControls = { [K in TwinInputKey]?: RowValue<Specs[K]> }

export const TWIN_INPUT_KEYS = Object.keys(TWIN_INPUTS) as TwinInputKey[]

/** The controls a twin graph declares, from its input names (older packages lack the optional ones). */
export function controlsOf(inputNames: readonly string[]): TwinInputKey[] {
  return TWIN_INPUT_KEYS.filter((k) => inputNames.includes(TWIN_INPUTS[k].name))
}

function absentValue(spec: TwinInputSpec, T: number): number {
  return spec.absent === 'T' ? T : spec.absent
}

function encodeOne(key: TwinInputKey, rows: readonly RowControls[], T: number): ort.Tensor {
  const spec: TwinInputSpec = TWIN_INPUTS[key]
  const n = rows.length
  const per = spec.dims[1] === 'T' ? T : 1
  const values = new Float64Array(n * per).fill(absentValue(spec, T)) // [n, per]
  rows.forEach((row, r) => {
    const v = row[key]
    if (v === undefined) return
    if (typeof v === 'number') values[r * per] = v
    else if (v.length !== per)
      throw new AppError(
        'INTERNAL',
        `control '${spec.name}' of row ${r} has ${v.length} values, not ${per}`,
      )
    else for (let j = 0; j < per; j++) values[r * per + j] = v[j] as number
  })
  return spec.dtype === 'int64'
    ? new ort.Tensor(
        'int64',
        BigInt64Array.from(values, (x) => BigInt(Math.round(x))),
        [n, per],
      )
    : new ort.Tensor('float32', Float32Array.from(values), [n, per])
}

/**
 * Feeds for the twin graph's controls, one row of controls per batch row.
 * @param T the number of experts
 * @param controls the controls the graph has (default: every control of the spec); see checkContract
 * @example
 * session.run({ ...inputs, ...encodeControls([{ mixWeights: [0, 1, 0] }, { useRouter: 1, topK: 2 }], 3) })
 */
export function encodeControls(
  rows: readonly RowControls[],
  T: number,
  controls: readonly TwinInputKey[] = TWIN_INPUT_KEYS,
): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {}
  for (const key of controls) feeds[TWIN_INPUTS[key].name] = encodeOne(key, rows, T)
  return feeds
}
