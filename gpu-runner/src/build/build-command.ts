/**
 * `twinserve build <recipe.yaml> --out <dir> [--force] [--quiet] [--json <file>]`: the CLI face of
 * buildPackage. Progress goes to stderr (bars on a terminal, lines otherwise), the final table to stdout.
 * Exit codes: 0 built and verified, 1 the build failed (message on stderr), 2 bad command line.
 * @module
 */
import { writeFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { AppError } from '@twinserve/shared'
import { buildDelta, formatDelta } from './build-delta.ts'
import { type BuildReport, buildPackage } from './build-package.ts'
import { describeOsError } from './os-error.ts'
import { parseChanges } from './pipeline/expert-changes.ts'
import { createReporter } from './pipeline/progress.ts'
import { formatReport } from './report.ts'

const USAGE = `usage: twinserve build <recipe.yaml|recipe.json> --out <dir> [options]

Builds a twin package (shared model + low-rank exclusive knowledge per expert + an embedded router) from a base
ONNX model and fine-tuned experts, verifies it, and writes it atomically to <dir>. A recipe without \`exclusive\`
gets the measured default, { budget: 0.055, dtype: int8 } (docs/user-guide.md, "Choosing a configuration").

options:
  --out, -o <dir>   package directory to create (required)
  --force           replace <dir> if it exists (only once the new package is verified)
  --quiet, -q       no progress output (the final table is still printed)
  --json <file>     also write the build report as JSON

expert deltas (a new version of a built package; <recipe> is the one it was built from):
  --from <package>                   the package to start from (its shared model and the kept experts'
                                     factors are reused byte for byte)
  --add-expert <name>=<model.onnx>   add an expert (repeatable)
  --remove-expert <name>             remove an expert (repeatable)
  --replace-expert <name>=<model.onnx>  recompute an expert from a new model (repeatable)
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
        from: { type: 'string' },
        'add-expert': { type: 'string', multiple: true },
        'remove-expert': { type: 'string', multiple: true },
        'replace-expert': { type: 'string', multiple: true },
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
  const flags = {
    add: values['add-expert'] ?? [],
    remove: values['remove-expert'] ?? [],
    replace: values['replace-expert'] ?? [],
  }
  const changing = flags.add.length + flags.remove.length + flags.replace.length > 0
  if (changing !== (values.from !== undefined)) {
    process.stderr.write(
      `twinserve build: ${changing ? '--add-expert, --remove-expert and --replace-expert need --from <package>' : '--from <package> needs at least one --add-expert, --remove-expert or --replace-expert'}\n\n${USAGE}`,
    )
    return 2
  }
  try {
    const options = {
      out: values.out,
      force: values.force,
      reporter: createReporter({ quiet: values.quiet }),
    }
    let report: BuildReport
    if (values.from) {
      const delta = await buildDelta(recipe, values.from, parseChanges(flags), options)
      process.stdout.write(formatDelta(delta.delta))
      report = delta
    } else report = await buildPackage(recipe, options)
    process.stdout.write(formatReport(report))
    if (values.json) {
      const { manifest: _m, ...rest } = report
      await writeFile(
        values.json,
        `${JSON.stringify({ ...rest, router: { ...rest.router, heldoutPredictions: undefined, heldoutLogits: undefined } }, null, 2)}\n`,
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
