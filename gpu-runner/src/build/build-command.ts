/**
 * `twinserve build <recipe.yaml> --out <dir> [--force] [--quiet] [--json <file>]`: the CLI face of
 * buildPackage. Progress goes to stderr (bars on a terminal, lines otherwise), the final table to stdout.
 * Exit codes: 0 built and verified, 1 the build failed (message on stderr), 2 bad command line.
 * @module
 */
import { writeFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { AppError } from '@twinserve/shared'
import { buildPackage } from './build-package.ts'
import { describeOsError } from './os-error.ts'
import { createReporter } from './pipeline/progress.ts'
import { formatReport } from './report.ts'

const USAGE = `usage: twinserve build <recipe.yaml|recipe.json> --out <dir> [options]

Builds a twin package (shared model + low-rank exclusive knowledge per expert + an embedded router) from a base
ONNX model and fine-tuned experts, verifies it, and writes it atomically to <dir>.

options:
  --out, -o <dir>   package directory to create (required)
  --force           replace <dir> if it exists (only once the new package is verified)
  --quiet, -q       no progress output (the final table is still printed)
  --json <file>     also write the build report as JSON
  --help, -h        this text
`

export async function run(args: string[]): Promise<number> {
  let parsed: ReturnType<typeof parse>
  const parse = (a: string[]) =>
    parseArgs({
      args: a,
      allowPositionals: true,
      options: {
        out: { type: 'string', short: 'o' },
        force: { type: 'boolean', default: false },
        quiet: { type: 'boolean', short: 'q', default: false },
        json: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    })
  try {
    parsed = parse(args)
  } catch (err) {
    process.stderr.write(
      `twinserve build: ${err instanceof Error ? err.message : String(err)}\n\n${USAGE}`,
    )
    return 2
  }
  const { values, positionals } = parsed
  if (values.help) {
    process.stdout.write(USAGE)
    return 0
  }
  if (positionals.length !== 1 || !values.out) {
    process.stderr.write(
      `twinserve build: ${positionals.length !== 1 ? 'give exactly one recipe file' : '--out <dir> is required'}\n\n${USAGE}`,
    )
    return 2
  }
  const recipe = positionals[0] as string
  try {
    const report = await buildPackage(recipe, {
      out: values.out,
      force: values.force,
      reporter: createReporter({ quiet: values.quiet }),
    })
    process.stdout.write(formatReport(report))
    if (values.json) {
      const { manifest: _m, ...rest } = report
      await writeFile(
        values.json,
        `${JSON.stringify({ ...rest, router: { ...rest.router, heldoutPredictions: undefined } }, null, 2)}\n`,
      )
    }
    return 0
  } catch (err) {
    const osError = await describeOsError(err)
    const message =
      err instanceof AppError
        ? `${err.message} [${err.code}]`
        : (osError ??
          `unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
    process.stderr.write(`\ntwinserve build: ${message}\n`)
    return 1
  }
}
