/**
 * `npm run zoo`: regenerates the bundled demo zoo (zoo/fashion/models) and the routing data
 * (bench/.cache/zoo/routing.jsonl) from the Debian Fashion-MNIST data and the bundled digits, then prints the
 * accuracy table and timings for bench/RESULTS.md.
 *
 *   npm run zoo                      # rebuild in place
 *   npm run zoo -- --check           # rebuild into a temp dir and compare sha256 with the committed files
 *   npm run zoo -- --out DIR --routing FILE
 * @module
 */
import { existsSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { availableParallelism, cpus, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { ort } from '@twinserve/gpu-runner/runtime'
import { AppError } from '@twinserve/shared'
import { DEFAULT_ROUTING_PATH } from './routing-data.ts'
import { type BuildZooResult, buildZoo, sha256Hex } from './zoo-builder.ts'
import { DEMO_ZOO_DIR, readZooManifest, type ZooManifest } from './zoo-manifest.ts'

function cpuModel(): string {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('model name'))
    return line?.split(':')[1]?.trim() ?? cpus()[0]?.model ?? 'unknown'
  } catch {
    return cpus()[0]?.model ?? 'unknown'
  }
}

const pct = (v: number | undefined) => (v === undefined ? '-' : `${(v * 100).toFixed(2)}%`)

/** Markdown for bench/RESULTS.md: accuracy per task on the test split, and timings. */
export function resultsMarkdown(m: ZooManifest, t: BuildZooResult['timings']): string {
  const rows = m.experts.map((e) => {
    const base = m.base.testAccuracy[e.name]
    const own = e.testAccuracy[e.name]
    const gain =
      base === undefined || own === undefined ? '-' : `+${((own - base) * 100).toFixed(2)}`
    const secs = ((t.expertMs[e.name] ?? 0) / 1000).toFixed(1)
    return `| ${e.name} | ${m.tasks.find((x) => x.name === e.name)?.split.test ?? '-'} | ${pct(base)} | ${pct(own)} | ${gain} | ${e.training.bestEpoch}/${e.training.epochsRun} | ${secs} s |`
  })
  const names = m.experts.map((e) => e.name)
  const cross = m.experts.map(
    (e) =>
      `| ${e.name} | ${names.map((n) => (e.testAccuracy[n] === undefined ? '-' : (e.testAccuracy[n] * 100).toFixed(1))).join(' | ')} |`,
  )
  return [
    '| task | test examples | base | expert | gain (points) | best/run epochs | expert training |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
    '',
    `Base: ${(t.baseMs / 1000).toFixed(1)} s (${m.base.training.epochsRun} epoch on ${m.base.training.trainExamples} images). ` +
      `Data loading and transforms: ${(t.loadMs / 1000).toFixed(1)} s. Whole run: ${(t.totalMs / 1000).toFixed(1)} s.`,
    '',
    'Every expert on every task (test accuracy, %; rows: expert, columns: task):',
    '',
    `| expert | ${names.join(' | ')} |`,
    `| --- |${names.map(() => ' --- |').join('')}`,
    `| base | ${names.map((n) => (m.base.testAccuracy[n] === undefined ? '-' : ((m.base.testAccuracy[n] ?? 0) * 100).toFixed(1))).join(' | ')} |`,
    ...cross,
  ].join('\n')
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: DEMO_ZOO_DIR },
      routing: { type: 'string', default: DEFAULT_ROUTING_PATH },
      check: { type: 'boolean', default: false },
      quiet: { type: 'boolean', default: false },
    },
  })
  const committedDir = resolve(values.out)
  const log = values.quiet ? () => {} : (line: string) => console.error(line)
  console.error(
    `machine: ${availableParallelism()} cores, ${cpuModel()}; node ${process.version}; onnxruntime-node ${ort.env.versions.common}; provider cpu`,
  )
  if (!values.check) {
    const r = await buildZoo({
      outDir: committedDir,
      routingPath: resolve(values.routing),
      routingLabel: values.routing,
      log,
    })
    console.log(resultsMarkdown(r.manifest, r.timings))
    console.log(
      `\nwrote ${committedDir} (${(r.manifest.totalBytes / 1e6).toFixed(2)} MB of models) and ${values.routing}`,
    )
    return 0
  }
  const committed = readZooManifest(committedDir)
  const tmp = await mkdtemp(join(tmpdir(), 'twinserve-zoo-check-'))
  try {
    const r = await buildZoo({
      outDir: tmp,
      routingPath: join(tmp, 'routing.jsonl'),
      routingLabel: committed.routing.file,
      log,
    })
    console.log(resultsMarkdown(r.manifest, r.timings))
    const pairs = ['zoo.json', committed.base.file, ...committed.experts.map((e) => e.file)].map(
      (f) => ({
        label: f,
        ours: join(committedDir, f),
        fresh: join(tmp, f),
      }),
    )
    // The routing file is not committed; compare it too when a previous run left one here.
    const routing = resolve(committed.routing.file)
    if (existsSync(routing))
      pairs.push({
        label: committed.routing.file,
        ours: routing,
        fresh: join(tmp, 'routing.jsonl'),
      })
    let same = true
    for (const p of pairs) {
      const a = sha256Hex(readFileSync(p.ours))
      const b = sha256Hex(readFileSync(p.fresh))
      if (a !== b) same = false
      console.log(`${a === b ? 'identical' : 'DIFFERENT'}  ${p.label}  ${b}`)
    }
    console.log(
      same
        ? '\nregenerated zoo is bit-for-bit identical'
        : '\nregenerated zoo differs from the committed one',
    )
    return same ? 0 : 1
  } finally {
    await rm(tmp, { recursive: true, force: true })
  }
}

main().then(
  (code) => {
    process.exitCode = code
  },
  (err: unknown) => {
    console.error(err instanceof AppError ? `error (${err.code}): ${err.message}` : err)
    process.exitCode = 1
  },
)
