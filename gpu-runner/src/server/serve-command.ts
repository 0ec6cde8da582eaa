/**
 * `twinserve serve`: parses flags and environment, starts the runner, and drains on SIGTERM/SIGINT.
 * @module
 */
import { ConfigError, parseServeArgs, SERVE_USAGE } from '../config.ts'
import { mergeTensor } from '../merge/merge-tensor.ts'
import { createLogger, errorFields } from './logger.ts'
import { exitOnSignals, startRunner } from './runner.ts'

export async function run(args: string[]): Promise<number> {
  let config: ReturnType<typeof parseServeArgs>
  try {
    config = parseServeArgs(args)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`twinserve serve: ${err.message}\n\n${SERVE_USAGE}`)
      return 2
    }
    throw err
  }
  if (config === 'help') {
    process.stdout.write(SERVE_USAGE)
    return 0
  }
  const logger = createLogger({ level: config.logLevel })
  try {
    const runner = await startRunner(config, { logger, merge: mergeTensor })
    exitOnSignals(runner, logger)
  } catch (err) {
    // A package that fails to load is fatal: a runner serving half its models would mislead the gateway.
    logger.error('startup failed', errorFields(err))
    return 1
  }
  // The server keeps the process alive; exitOnSignals ends it.
  return new Promise<number>(() => undefined)
}
