/**
 * The environment the runner reads is exactly the one the deployment sets: RUNNER_ENV (gpu-runner/src/config.ts)
 * plus PULL_ENV (the image's package pull), compared by name with the runner container of every overlay as the pod
 * gets it (ConfigMap resolved), and then parsed with the runner's and the pull's own parsers, so that a renamed,
 * added or dropped variable, or a value the runner would refuse at start, fails here instead of in a cluster.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { parseServeArgs, RUNNER_ENV } from '@twinserve/gpu-runner'
import { PULL_ENV, parsePullEnv } from '@twinserve/infra/runner-image/pull-config.ts'
import { describe, expect, it } from 'vitest'
import { dockerfileEnv, OVERLAYS, REPO, render, runnerContainer } from './manifests.ts'

const EXPECTED = [...new Set([...RUNNER_ENV, ...PULL_ENV])].sort()

/** The pod's environment with references filled in the way the kubelet would (secrets: stand-in values). */
function podEnv(dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, src] of runnerContainer(render(dir)).env) {
    if (src.from === 'configMap') out[name] = src.value
    else if (src.var.value !== undefined) out[name] = src.var.value
    else if (src.var.valueFrom?.fieldRef) out[name] = 'twinserve-runner-7d9f8-abcde'
    else if (src.var.valueFrom?.secretKeyRef) out[name] = `secret-value-for-${name.toLowerCase()}`
  }
  return out
}

describe.each(Object.entries(OVERLAYS))('overlay %s', (_env, dir) => {
  it('sets exactly the variables the runner and the package pull read', () => {
    const names = [...runnerContainer(render(dir)).env.keys()].sort()
    expect(names).toEqual(EXPECTED)
  })

  it('sets values the runner and the pull accept at start', () => {
    const env = podEnv(dir)
    const pull = parsePullEnv(env)
    expect(pull.sources.length).toBeGreaterThan(0)
    // The entrypoint appends the pulled package directories to RUNNER_PACKAGES before starting the runner.
    const pulled = pull.sources.map((_, i) => join(pull.cacheDir, `package-${i}`))
    const config = parseServeArgs([], {
      ...env,
      RUNNER_PACKAGES: [env.RUNNER_PACKAGES, ...pulled].filter(Boolean).join(','),
    })
    expect(config).toMatchObject({
      host: '0.0.0.0',
      provider: 'cuda',
      insecureLocal: false,
      packages: pulled,
      gatewayUrl: env.GATEWAY_URL,
      publicUrl: env.RUNNER_PUBLIC_URL,
    })
  })
})

describe('runner image', () => {
  it('sets only variables the runner or the pull read (plus NODE_ENV), with values they accept', () => {
    const env = Object.fromEntries(dockerfileEnv())
    for (const name of Object.keys(env))
      expect([...EXPECTED, 'NODE_ENV'], `Dockerfile ENV ${name}`).toContain(name)
    expect(() =>
      parseServeArgs(['--package', '/p'], { ...env, RUNNER_SIGNING_SECRET: 'x'.repeat(32) }),
    ).not.toThrow()
  })

  it('entrypoint.sh reads no variable outside that list', () => {
    const script = readFileSync(`${REPO}infra/runner-image/entrypoint.sh`, 'utf8').replace(
      /^#.*$/gm,
      '',
    )
    const locals = new Set(['app_dir', 'pulled'])
    const used = [...script.matchAll(/\$\{?([A-Za-z_]\w*)/g)].map((m) => m[1] ?? '')
    for (const name of used) if (!locals.has(name)) expect(EXPECTED, `$${name}`).toContain(name)
  })

  it('the runner reads the environment only through RUNNER_OPTIONS (no stray process.env reads)', () => {
    // Offline tools (build, zoo, train) run on a workstation, not in the image.
    const offline = ['build', 'zoo', 'train']
    const files: string[] = []
    const walk = (dir: string) => {
      for (const name of readdirSync(dir)) {
        const path = join(dir, name)
        if (statSync(path).isDirectory()) {
          if (!offline.includes(name)) walk(path)
        } else if (/\.(ts|mjs)$/.test(name) && !/\.test\.ts$/.test(name)) files.push(path)
      }
    }
    walk(`${REPO}gpu-runner/src`)
    walk(`${REPO}gpu-runner/bin`)
    walk(`${REPO}infra/runner-image`)
    expect(files.length).toBeGreaterThan(10)
    const stray = files.filter((f) => /process\.env(\.|\[)/.test(readFileSync(f, 'utf8')))
    expect(stray.map((f) => f.slice(REPO.length))).toEqual([])
  })
})
