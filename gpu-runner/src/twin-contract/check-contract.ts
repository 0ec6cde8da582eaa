/**
 * Checks a loaded twin package's graphs against the contract: the twin graph takes the base model's inputs plus
 * every required control of TWIN_INPUTS (and any of the optional ones: a package built before an optional
 * control existed lacks it), with the spec's element type and dims, and returns the base outputs plus
 * `expert_weights`; every variant takes and returns exactly the base model's.
 * @module
 */
import {
  AppError,
  type PackageManifest,
  TWIN_INPUTS,
  TWIN_OUTPUT_WEIGHTS,
  type TwinInputKey,
  type TwinInputSpec,
} from '@twinserve/shared'
import type { ort } from '../runtime/ort-session.ts'
import { type RowControls, TWIN_INPUT_KEYS } from './encode-controls.ts'

type Session = Pick<ort.InferenceSession, 'inputNames' | 'outputNames'> & {
  inputMetadata?: ort.InferenceSession['inputMetadata']
}

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && [...a].sort().join('\0') === [...b].sort().join('\0')
}

function problem(model: string, what: string, got: readonly string[], want: string): AppError {
  return new AppError(
    'INVALID_MODEL',
    `model '${model}': ${what} has [${got.join(', ')}], the manifest and twin-graph contract say ${want}`,
  )
}

/** Element type and dims of each control the graph declares, against the spec. */
function checkControlTypes(
  m: PackageManifest,
  twin: Session,
  controls: readonly TwinInputKey[],
): void {
  const T = m.experts.length
  for (const key of controls) {
    const spec = TWIN_INPUTS[key]
    const meta = twin.inputMetadata?.find((x) => x.name === spec.name)
    if (!meta?.isTensor) continue
    const width = spec.dims[1] === 'T' ? T : 1
    const [, got] = meta.shape
    if (
      meta.type !== spec.dtype ||
      meta.shape.length !== 2 ||
      (got !== width && typeof got !== 'string')
    )
      throw new AppError(
        'INVALID_MODEL',
        `model '${m.name}': twin-graph input '${spec.name}' is ${meta.type} [${meta.shape.join(', ')}], the contract says ${spec.dtype} [batch, ${width}]`,
      )
  }
}

/**
 * @returns the controls the twin graph has (every required one, and the optional ones it declares)
 * @throws AppError INVALID_MODEL naming the graph and what differs
 */
export function checkContract(
  m: PackageManifest,
  twin: Session,
  variants: ReadonlyMap<string, Session>,
): TwinInputKey[] {
  const base = m.inputs.map((i) => i.name)
  const outs = m.outputs.map((o) => o.name)
  const required = TWIN_INPUT_KEYS.filter((k) => !TWIN_INPUTS[k].optional)
  const optional = TWIN_INPUT_KEYS.filter((k) => TWIN_INPUTS[k].optional)
  const present = optional.filter((k) => twin.inputNames.includes(TWIN_INPUTS[k].name))
  const controls = [...required, ...present]
  const want = [...base, ...controls.map((k) => TWIN_INPUTS[k].name)]
  if (!sameNames(twin.inputNames, want)) {
    const names = [...base, ...required.map((k) => TWIN_INPUTS[k].name)]
    const extra = optional.length
      ? ` (optional: ${optional.map((k) => TWIN_INPUTS[k].name).join(', ')})`
      : ''
    throw problem(
      m.name,
      'the twin graph’s inputs',
      twin.inputNames,
      `[${names.join(', ')}]${extra}`,
    )
  }
  checkControlTypes(m, twin, controls)
  const twinOut = [...outs, TWIN_OUTPUT_WEIGHTS]
  if (!sameNames(twin.outputNames, twinOut))
    throw problem(m.name, 'the twin graph’s outputs', twin.outputNames, `[${twinOut.join(', ')}]`)
  for (const [name, v] of variants) {
    if (!sameNames(v.inputNames, base))
      throw problem(m.name, `variant '${name}'’s inputs`, v.inputNames, `[${base.join(', ')}]`)
    if (!sameNames(v.outputNames, outs))
      throw problem(m.name, `variant '${name}'’s outputs`, v.outputNames, `[${outs.join(', ')}]`)
  }
  return controls
}

/**
 * A request may only set controls the package's twin graph has: an older package lacks the optional ones.
 * @throws AppError INVALID_REQUEST naming the package and the control
 */
export function assertControlsSupported(
  model: string,
  row: RowControls,
  controls: readonly TwinInputKey[],
): void {
  const missing = TWIN_INPUT_KEYS.find((k) => row[k] !== undefined && !controls.includes(k))
  if (missing === undefined) return
  const spec: TwinInputSpec = TWIN_INPUTS[missing]
  const what = spec.parameter ? `parameters.${spec.parameter}` : `the control '${spec.name}'`
  throw new AppError(
    'INVALID_REQUEST',
    `model '${model}' does not support ${what}: its twin graph has no '${spec.name}' input (the package was built before that control existed; rebuild it with a newer twinserve build)`,
  )
}
