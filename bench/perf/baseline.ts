/**
 * A builder from another commit, for before/after rows in one run (`npm run bench:perf -- --baseline <ref>`): the
 * commit's tree is exported with `git archive` into bench/.cache/perf/baseline/<sha>/ (once), given this checkout's
 * installed packages (its own workspaces in place of ours), and its `twinserve build` entry is what build-child.ts
 * runs. Nothing in the working tree or the git repository changes.
 * @module
 */
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, readdir, rm, symlink } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { CACHE, REPO } from './packages.ts'

const run = promisify(execFile)
const WORKSPACES = ['gateway', 'gpu-runner', 'infra', 'shared', 'zoo']

/** The full commit id of `ref`. */
export async function resolveRef(ref: string): Promise<string> {
  return (
    await run('git', ['rev-parse', '--verify', `${ref}^{commit}`], { cwd: REPO })
  ).stdout.trim()
}

/** The exported tree of `sha`, with node_modules linked; returns the builder's entry module. */
export async function baselineBuilder(sha: string, log: (s: string) => void): Promise<string> {
  const dir = join(CACHE, 'baseline', sha)
  const entry = join(dir, 'gpu-runner', 'src', 'index.ts')
  if (existsSync(join(dir, 'complete'))) return entry
  log(`exporting the builder at ${sha.slice(0, 10)} into ${dir}`)
  await rm(dir, { recursive: true, force: true })
  await mkdir(dir, { recursive: true })
  await run('sh', ['-c', `git archive ${sha} | tar -x -C '${dir}'`], { cwd: REPO })
  const modules = join(dir, 'node_modules')
  await mkdir(join(modules, '@twinserve'), { recursive: true })
  for (const name of await readdir(join(REPO, 'node_modules')))
    if (name !== '@twinserve') await symlink(join(REPO, 'node_modules', name), join(modules, name))
  for (const w of WORKSPACES)
    if (existsSync(join(dir, w))) await symlink(join(dir, w), join(modules, '@twinserve', w))
  await run('touch', [join(dir, 'complete')])
  return entry
}
