/**
 * `twinserve-pull-packages`: the image entrypoint's first step. Reads PULL_ENV, pulls and verifies every package,
 * prints the verified directories comma-separated on stdout (the entrypoint appends them to RUNNER_PACKAGES) and
 * logs JSON lines on stderr, in the runner's log format. Exit 0 on success, 2 on a configuration error, 1 when a
 * pull fails: the container then stops before the runner starts, and the log line names the source and file.
 * @module
 */
import { createLogger, errorFields } from '@twinserve/gpu-runner/server'
import { parsePullEnv } from './pull-config.ts'
import { pullPackages } from './pull-packages.ts'

export async function main(
  env: Readonly<Record<string, string | undefined>> = process.env,
  out: (text: string) => void = (t) => process.stdout.write(t),
): Promise<number> {
  const logger = createLogger({
    sink: (line) => process.stderr.write(`${line}\n`),
    fields: { component: 'pull-packages' },
  })
  let config: ReturnType<typeof parsePullEnv>
  try {
    config = parsePullEnv(env)
  } catch (err) {
    logger.error('bad pull configuration', errorFields(err))
    return 2
  }
  try {
    const pulled = await pullPackages(config, { logger })
    out(`${pulled.map((p) => p.dir).join(',')}\n`)
    return 0
  } catch (err) {
    // PullError / AppError carry the source and file; anything else (disk full, permissions) is shown as is.
    logger.error('package pull failed', errorFields(err))
    return 1
  }
}
