/**
 * `twinserve build` in a process of its own, for the builder benchmark: runs the real CLI entry with the given
 * arguments, then writes its wall time, CPU time (user + system: what the build itself cost, whatever else the
 * machine was running) and peak resident set size (getrusage maxrss, the kernel's high-water mark, so no sampling
 * misses a spike) as JSON to the file named by TWINSERVE_BENCH_STATS. TWINSERVE_BENCH_BUILDER names another
 * builder's entry module (a baseline commit's, baseline.ts); default this checkout's.
 *
 *   TWINSERVE_BENCH_STATS=stats.json node --import tsx bench/perf/build-child.ts build <recipe> --out <dir> …
 * @module
 */
import { writeFile } from 'node:fs/promises'

type Main = (args: string[]) => Promise<number>
const { main } = (await import(process.env.TWINSERVE_BENCH_BUILDER ?? '@twinserve/gpu-runner')) as {
  main: Main
}
const started = performance.now()
const code = await main(process.argv.slice(2))
const usage = process.resourceUsage()
const stats = {
  exitCode: code,
  seconds: (performance.now() - started) / 1000,
  cpuSeconds: (usage.userCPUTime + usage.systemCPUTime) / 1e6,
  maxRssMb: usage.maxRSS / 1024,
}
const path = process.env.TWINSERVE_BENCH_STATS
if (path) await writeFile(path, `${JSON.stringify(stats)}\n`)
process.exitCode = code
