/**
 * The twin-graph contract on the runner side (`@twinserve/gpu-runner/twin-contract`), derived from TWIN_INPUTS
 * in shared/src/schemas/twin-package.ts: the one encoder of a twin graph's control inputs, and the check of a
 * loaded package's graphs against the contract. Whatever runs a twin graph (runner, builder verification,
 * benchmarks, tests) encodes its controls here.
 * @module
 */
export { assertControlsSupported, checkContract } from './check-contract.ts'
export {
  controlsOf,
  encodeControls,
  type RowControls,
  TWIN_INPUT_KEYS,
} from './encode-controls.ts'
