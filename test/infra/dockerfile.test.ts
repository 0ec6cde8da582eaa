/**
 * The runner image's Dockerfile, linted without a Docker engine (none runs here): dockerfile-utils' validator
 * (instruction syntax, flags, ports, JSON forms), then the rules this image must keep, in the spirit of hadolint's
 * (pinned bases, non-root user, apt hygiene, exec-form entrypoint), and checks that every file it copies exists
 * and is inside the build context that Dockerfile.dockerignore leaves.
 */
import { accessSync, constants, existsSync, readFileSync } from 'node:fs'
import { validate } from 'dockerfile-utils'
import { describe, expect, it } from 'vitest'
import { DOCKERFILE, dockerfile, dockerfileEnv, find, REPO, render } from './manifests.ts'

const text = readFileSync(DOCKERFILE, 'utf8')
const df = dockerfile()

/** ARG defaults declared before the first FROM (what `${X}` in a FROM line resolves to). */
function globalArgs(): Map<string, string> {
  const out = new Map<string, string>()
  const firstFrom = df.getFROMs()[0]?.getRange().start.line ?? 0
  for (const arg of df.getARGs()) {
    if (arg.getRange().start.line > firstFrom) continue
    const p = arg.getProperty()
    if (p) out.set(p.getName(), p.getValue() ?? '')
  }
  return out
}
const expand = (s: string) =>
  s.replace(/\$\{(\w+)\}/g, (_, n: string) => globalArgs().get(n) ?? `\${${n}}`)

describe('runner Dockerfile', () => {
  it('passes dockerfile-utils validation with no diagnostics', () => {
    expect(validate(text).map((d) => `line ${d.range.start.line + 1}: ${d.message}`)).toEqual([])
  })

  it('and the validator does catch mistakes (a misspelt instruction, a bad port)', () => {
    const broken = text
      .replace('USER 10001:10001', 'USR 10001')
      .replace('EXPOSE 8790', 'EXPOSE http')
    expect(validate(broken).map((d) => d.message)).toEqual([
      'Unknown instruction: USR',
      'Invalid containerPort: http',
    ])
  })

  it('builds on pinned base images (explicit tags, never latest)', () => {
    const images = df.getFROMs().map((f) => expand(f.getImage() ?? ''))
    expect(images).toEqual([
      expect.stringMatching(/^node:20\.\d+\.\d+-bookworm-slim$/),
      expect.stringMatching(/^nvidia\/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+$/),
    ])
    for (const image of images) expect(image).not.toMatch(/:latest$/)
  })

  it('installs onnxruntime-node with its CUDA provider and fails the build without it', () => {
    const install = df
      .getInstructions()
      .find((i) => i.getKeyword() === 'RUN' && /npm ci/.test(i.getTextContent()))
    const body = install?.getTextContent() ?? ''
    expect(body).toMatch(/ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci --omit=dev/)
    expect(body).toContain('test -f "$ort/linux/x64/libonnxruntime_providers_cuda.so"')
    // The repository's .npmrc says onnxruntime-node-install=skip (for CPU machines): it must not reach the image.
    const copied = df.getCOPYs().flatMap((c) => c.getArgumentsContent()?.split(/\s+/) ?? [])
    expect(copied).not.toContain('.npmrc')
  })

  it('keeps apt lean: no recommends, lists removed in the same layer', () => {
    for (const run of df.getInstructions().filter((i) => i.getKeyword() === 'RUN')) {
      const body = run.getTextContent()
      if (!/apt-get install/.test(body)) continue
      expect(body).toContain('--no-install-recommends')
      expect(body).toMatch(/apt-get update/)
      expect(body).toContain('rm -rf /var/lib/apt/lists/*')
    }
  })

  it('runs as the non-root user the Deployment expects, with an exec-form entrypoint and a V2 health check', () => {
    const users = df.getInstructions().filter((i) => i.getKeyword() === 'USER')
    const user = users[users.length - 1]?.getArgumentsContent() ?? ''
    expect(user).toMatch(/^[1-9]\d*:[1-9]\d*$/)
    for (const overlay of ['overlays/staging', 'overlays/production']) {
      const pod = find(render(overlay), 'Deployment').spec.template.spec
      expect(`${pod.securityContext.runAsUser}:${pod.securityContext.runAsGroup}`).toBe(user)
      expect(pod.securityContext.runAsNonRoot).toBe(true)
    }
    const entrypoint = df.getENTRYPOINTs()[0]
    const args = JSON.parse(entrypoint?.getArgumentsContent() ?? 'null') as string[]
    expect(args).toEqual(['/usr/bin/tini', '--', '/app/infra/runner-image/entrypoint.sh'])
    const script = `${REPO}infra/runner-image/entrypoint.sh`
    expect(() => accessSync(script, constants.X_OK)).not.toThrow()
    const health = df.getHEALTHCHECKs()[0]?.getTextContent() ?? ''
    expect(health).toContain('/v2/health/ready')
    expect(
      df
        .getInstructions()
        .find((i) => i.getKeyword() === 'EXPOSE')
        ?.getArgumentsContent(),
    ).toBe(dockerfileEnv().get('RUNNER_PORT'))
  })

  it('copies every npm workspace manifest before `npm ci` (which refuses a lockfile naming a missing workspace)', () => {
    const { workspaces } = JSON.parse(readFileSync(`${REPO}package.json`, 'utf8')) as {
      workspaces: string[]
    }
    const install = df
      .getInstructions()
      .findIndex((i) => i.getKeyword() === 'RUN' && /npm ci/.test(i.getTextContent()))
    const copiedBefore = df
      .getInstructions()
      .slice(0, install)
      .filter((i) => i.getKeyword() === 'COPY')
      .flatMap((c) => (c.getArgumentsContent()?.split(/\s+/) ?? []).slice(0, -1))
    expect(workspaces.length).toBeGreaterThan(0)
    for (const ws of workspaces) expect(copiedBefore, ws).toContain(`${ws}/package.json`)
  })

  it('copies only files that exist and that the build context keeps', () => {
    const ignore = readFileSync(`${REPO}infra/runner-image/Dockerfile.dockerignore`, 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'))
    const kept = ignore.filter((l) => l.startsWith('!')).map((l) => l.slice(1))
    const sources = df
      .getCOPYs()
      .filter((c) => !c.getFromFlag())
      .flatMap((c) => (c.getArgumentsContent()?.split(/\s+/) ?? []).slice(0, -1))
    expect(sources.length).toBeGreaterThan(0)
    for (const src of sources) {
      expect(existsSync(`${REPO}${src}`), src).toBe(true)
      expect(
        kept.some((k) => src === k || src.startsWith(k)),
        `${src} is excluded from the build context by Dockerfile.dockerignore`,
      ).toBe(true)
    }
  })
})
