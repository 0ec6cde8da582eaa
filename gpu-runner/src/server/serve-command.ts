/**
 * `twinserve serve`: parses flags and environment, then starts the runner.
 * @module
 */
import { ConfigError, parseServeArgs, SERVE_USAGE } from '../config.ts'

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
  // The HTTP server lands in the next commit; until then `serve` validates its configuration only.
  process.stderr.write('twinserve serve: the server is not implemented yet\n')
  return 1
}
