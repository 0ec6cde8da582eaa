/**
 * The table `twinserve build` prints at the end (Markdown, so it pastes into RESULTS.md as is): tensors and
 * ranks with their reconstruction error, the router and its held-out accuracy, package size against the
 * experts' total, the verification numbers, and where the time went.
 * @module
 */
import type { BuildReport } from './build-package.ts'
import { markdownTable } from './pipeline/progress.ts'

const mb = (bytes: number) =>
  bytes >= 1e6 ? `${(bytes / 1e6).toFixed(2)} MB` : `${(bytes / 1e3).toFixed(1)} kB`
const pct = (x: number) => `${(x * 100).toFixed(1)}%`
const sci = (x: number) => (x === 0 ? '0' : x.toExponential(2))

function ranksCell(ranks: readonly number[] | undefined): string {
  if (!ranks) return 'exact'
  const unique = [...new Set(ranks)]
  return unique.length === 1 ? `${unique[0]} × ${ranks.length}` : ranks.join(', ')
}

/** What import did to the models and how the graphs were written (opset forms, lifted weights, external data). */
function importLines(g: BuildReport['graph']): string[] {
  const forms =
    g.forms.length === 0
      ? 'every op the rewrite adds in its current form'
      : `the rewrite's ops in that opset's forms (${g.forms.join('; ')})`
  return [
    `models: ONNX opset ${g.opset}, kept (not upgraded): ${forms}`,
    `import: ${g.liftedConstants} Constant-node weights lifted to initializers; external data in the inputs: ${g.externalInputs ? 'yes' : 'no'}; in the package: ${g.externalOutputs ? 'yes (graphs over the 2 GB protobuf limit)' : 'no'}`,
  ]
}

/**
 * The tensors the experts changed that carry no exclusive knowledge: without this table a build that drops an
 * expert's changes (a constant-folded position table, a rank-3 parameter) looks like any other until its one-hot
 * verification row.
 */
function sharedOnlyLines(rows: NonNullable<BuildReport['sharedOnly']>): string[] {
  if (rows.length === 0) return []
  return [
    '',
    `shared only: ${rows.length === 1 ? '1 tensor the experts changed carries' : `${rows.length} tensors the experts changed carry`} no exclusive knowledge; every expert gets the shared value there, so a one-hot mix differs from its expert:`,
    '',
    markdownTable(
      ['tensor', 'shape', 'expert vs shared (rel.) max', 'why'],
      rows.map((row) => [
        row.name,
        `[${row.shape.join(', ')}]`,
        sci(Math.max(...row.relError)),
        row.reason,
      ]),
    ),
  ]
}

export function formatReport(r: BuildReport): string {
  const m = r.manifest
  const parts: string[] = []
  parts.push(`Twin package '${m.name}' → ${r.dir}`)
  parts.push(
    `experts (${m.experts.length}): ${m.experts.map((e) => e.name).join(', ')}; shared: ${JSON.stringify(
      (m.recipe as { shared?: unknown }).shared,
    )}`,
  )
  parts.push(...importLines(r.graph))
  parts.push('')
  parts.push(
    markdownTable(
      ['tensor', 'kind', 'shape', 'rank per expert', 'rel. error max', 'rel. error mean'],
      r.exclusive.map((row) => {
        const max = Math.max(...row.relError)
        const mean = row.relError.reduce((a, b) => a + b, 0) / Math.max(1, row.relError.length)
        return [
          row.name,
          row.kind,
          `[${row.shape.join(', ')}]`,
          ranksCell(row.ranks),
          sci(max),
          sci(mean),
        ]
      }),
    ),
  )
  parts.push(...sharedOnlyLines(r.sharedOnly ?? []))
  parts.push('')
  const ex = r.router.examples
  parts.push(
    markdownTable(
      [
        'router',
        'feature',
        'size',
        'train / val / held-out',
        'epochs (best)',
        'held-out accuracy',
        'in package',
      ],
      [
        [
          m.router.kind,
          r.router.feature,
          String(r.router.featureSize),
          `${ex.train} / ${ex.validation} / ${ex.heldout}`,
          r.router.epochs === undefined ? '-' : `${r.router.epochs} (${r.router.bestEpoch})`,
          pct(r.router.heldoutAccuracy),
          `${pct(r.verification.routerHeldoutAccuracy)} (agreement ${pct(r.verification.routerAgreement)})`,
        ],
      ],
    ),
  )
  parts.push('')
  const s = r.sizes
  parts.push(
    markdownTable(
      ['size', 'bytes', 'vs experts'],
      [
        ...Object.entries(s.files).map(([f, b]) => [f, mb(b), pct(b / s.expertsBytes)]),
        ['package total', mb(s.packageBytes), pct(s.packageBytes / s.expertsBytes)],
        [`experts total (${m.experts.length} files)`, mb(s.expertsBytes), '100.0%'],
        ['base', mb(s.baseBytes), pct(s.baseBytes / s.expertsBytes)],
      ],
    ),
  )
  parts.push('')
  const v = r.verification
  parts.push(
    markdownTable(
      ['verification (check inputs)', 'max abs diff', 'expert vs shared (scale)'],
      [
        ['all-zero weights vs shared variant', sci(v.zeroWeightsMaxAbsDiff), '-'],
        ...v.experts.map((e) => [
          `one-hot '${e.name}' vs expert`,
          sci(e.oneHotMaxAbsDiff),
          sci(e.sharedMaxAbsDiff),
        ]),
      ],
    ),
  )
  parts.push('')
  parts.push(
    markdownTable(
      ['variant', 'exclusive', 'description'],
      r.variants.map((x) => [
        x.name,
        x.exclusive ? 'yes' : 'no',
        `${x.description}${x.heldoutAccuracy === undefined ? '' : ` (router held-out ${pct(x.heldoutAccuracy)})`}`,
      ]),
    ),
  )
  parts.push('')
  parts.push(
    markdownTable(
      ['step', 'seconds'],
      r.timings.map((t) => [t.label, t.seconds.toFixed(1)]),
    ),
  )
  return `${parts.join('\n')}\n`
}
