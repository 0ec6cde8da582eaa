/**
 * The runner package's root (`@twinserve/gpu-runner`): the `twinserve` command line and the configuration it
 * reads. Each area has its own entry (`/build`, `/model`, `/merge`, `/onnx`, `/package`, `/runtime`, `/server`,
 * `/train`); `/test-support` holds what tests and benchmarks share.
 * @module
 */
export { COMMANDS, type Command, main } from './cli.ts'
export {
  ConfigError,
  parseServeArgs,
  RUNNER_ENV,
  RUNNER_OPTIONS,
  type RunnerConfig,
  type RunnerConfigInput,
  RunnerConfigSchema,
  SERVE_USAGE,
} from './config.ts'
