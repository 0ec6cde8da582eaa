/**
 * `twinserve build` in a process of its own, for the builder benchmark: runs the real CLI entry with the given
 * arguments, then writes its wall time and peak resident set size (getrusage maxrss, the kernel's high-water
 * mark, so no sampling misses a spike) as JSON to the file named by TWINSERVE_BENCH_STATS.
 *
 *   TWINSERVE_BENCH_STATS=stats.json node --import tsx bench/perf/build-child.ts build <recipe> --out <dir> …
 * @module
 */
import { writeFile } from 'node:fs/promises'
import { main } from '@twinserve/gpu-runner'

const started = performance.now()
const code = await main(process.argv.slice(2))
const stats = {
  exitCode: code,
  seconds: (performance.now() - started) / 1000,
  maxRssMb: process.resourceUsage().maxRSS / 1024,
}
const path = process.env.TWINSERVE_BENCH_STATS
if (path) await writeFile(path, `${JSON.stringify(stats)}\n`)
process.exitCode = code
