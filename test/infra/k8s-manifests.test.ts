/**
 * The Kubernetes manifests, as `kubectl apply -k` would send them: rendered by kustomize, every object validated
 * against the upstream OpenAPI schemas (kubernetes-models, @kubernetes-models/keda), then typed against the same
 * models' TypeScript interfaces so that a misspelt field (which the schemas allow) fails too; then the properties
 * the runner depends on: a GPU, V2 probes, a drain that fits the grace period, selectors that match, autoscaling on
 * metrics that exist, secrets only by reference.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1'
import { createMetrics } from '@twinserve/gpu-runner/server'
import { Deployment } from 'kubernetes-models/apps/v1'
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1'
import { ConfigMap, Namespace, Service, ServiceAccount } from 'kubernetes-models/v1'
import { describe, expect, it } from 'vitest'
import { unstable_readConfig } from 'wrangler'
// The gateway package exports only ./dev; its metric table is plain data, read here by path.
import { METRIC_FAMILIES } from '../../gateway/src/metrics/metric-families.ts'
import {
  find,
  type K8sObject,
  KUSTOMIZATIONS,
  OVERLAYS,
  REPO,
  render,
  runnerContainer,
} from './manifests.ts'

/** apiVersion/kind → the model that validates it, and the interface (module, name) that types it. */
const MODELS: Record<
  string,
  { model: { new (o: never): { validate(): void } }; types: [string, string] }
> = {
  'v1/Namespace': { model: Namespace, types: ['kubernetes-models/v1/Namespace', 'INamespace'] },
  'v1/ConfigMap': { model: ConfigMap, types: ['kubernetes-models/v1/ConfigMap', 'IConfigMap'] },
  'v1/Service': { model: Service, types: ['kubernetes-models/v1/Service', 'IService'] },
  'v1/ServiceAccount': {
    model: ServiceAccount,
    types: ['kubernetes-models/v1/ServiceAccount', 'IServiceAccount'],
  },
  'apps/v1/Deployment': {
    model: Deployment,
    types: ['kubernetes-models/apps/v1/Deployment', 'IDeployment'],
  },
  'policy/v1/PodDisruptionBudget': {
    model: PodDisruptionBudget,
    types: ['kubernetes-models/policy/v1/PodDisruptionBudget', 'IPodDisruptionBudget'],
  },
  'networking.k8s.io/v1/Ingress': {
    model: Ingress,
    types: ['kubernetes-models/networking.k8s.io/v1/Ingress', 'IIngress'],
  },
  'keda.sh/v1alpha1/ScaledObject': {
    model: ScaledObject,
    types: ['@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject', 'IScaledObject'],
  },
}
const key = (o: K8sObject) => `${o.apiVersion}/${o.kind}`

/**
 * Type-checks objects as literals of their model interfaces with the repository's tsc: excess-property checks
 * catch the misspelt or misplaced fields that the JSON schemas let through. Returns tsc's error lines.
 */
function typecheck(files: Record<string, K8sObject[]>): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'twinserve-k8s-types-'))
  try {
    for (const [name, objects] of Object.entries(files)) {
      const imports = new Set<string>()
      const decls = objects.map((o, i) => {
        const m = MODELS[key(o)]
        if (!m) throw new Error(`no model for ${key(o)}`)
        imports.add(`import type { ${m.types[1]} } from '${m.types[0]}'`)
        return `export const o${i}: ${m.types[1]} = ${JSON.stringify(o)}`
      })
      writeFileSync(join(dir, `${name}.ts`), `${[...imports].join('\n')}\n${decls.join('\n')}\n`)
    }
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          module: 'ESNext',
          moduleResolution: 'Bundler',
          target: 'ES2022',
          types: [],
          baseUrl: REPO,
          paths: { '*': [`${REPO}node_modules/*`] },
          ignoreDeprecations: '6.0',
        },
        include: ['*.ts'],
      }),
    )
    try {
      execFileSync(process.execPath, [`${REPO}node_modules/typescript/bin/tsc`, '-p', dir], {
        encoding: 'utf8',
      })
      return []
    } catch (err) {
      return String((err as { stdout?: string }).stdout ?? err)
        .split('\n')
        .filter((l) => l.includes('error TS'))
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

describe.each(KUSTOMIZATIONS)('kustomization %s', (dir) => {
  const objects = render(dir)

  it('renders only kinds with a schema, each valid against it', () => {
    expect(objects.length).toBeGreaterThan(0)
    for (const o of objects) {
      const m = MODELS[key(o)]
      expect(m, `${key(o)} ${o.metadata.name} has no schema here`).toBeDefined()
      expect(
        () => new (m as NonNullable<typeof m>).model(o as never).validate(),
        `${key(o)} ${o.metadata.name}`,
      ).not.toThrow()
    }
  })

  it('holds no Secret and no secret value: secrets are referenced, created out of band', () => {
    expect(objects.filter((o) => o.kind === 'Secret')).toEqual([])
    const { env } = runnerContainer(objects)
    for (const name of [
      'RUNNER_SIGNING_SECRET',
      'AWS_ACCESS_KEY_ID',
      'AWS_SECRET_ACCESS_KEY',
      'AWS_SESSION_TOKEN',
    ]) {
      const v = env.get(name)
      expect(v?.from, name).toBe('env')
      expect(v?.from === 'env' && v.var.valueFrom?.secretKeyRef, name).toBeTruthy()
    }
  })

  it('runs the runner on one GPU with V2 probes on its port, and a drain that fits the grace period', () => {
    const pod = find(objects, 'Deployment').spec.template.spec
    const { container, env } = runnerContainer(objects)
    expect(container.resources.limits['nvidia.com/gpu']).toBe('1')
    expect(container.resources.requests['nvidia.com/gpu']).toBe('1')
    const port = container.ports.find((p: { name: string }) => p.name === 'http')
    const runnerPort = env.get('RUNNER_PORT')
    expect(runnerPort?.from === 'configMap' && Number(runnerPort.value)).toBe(port.containerPort)
    expect(container.readinessProbe.httpGet).toEqual({ path: '/v2/health/ready', port: 'http' })
    expect(container.livenessProbe.httpGet).toEqual({ path: '/v2/health/live', port: 'http' })
    expect(container.startupProbe.httpGet).toEqual({ path: '/v2/health/live', port: 'http' })

    // SIGTERM comes after preStop; the runner then drains for up to RUNNER_DRAIN_TIMEOUT_MS, closes connections
    // (up to 5 s) and deregisters. The kubelet kills at terminationGracePeriodSeconds, counted from preStop.
    const sleep = Number(container.lifecycle.preStop.exec.command[1])
    expect(container.lifecycle.preStop.exec.command[0]).toBe('sleep')
    const drain = env.get('RUNNER_DRAIN_TIMEOUT_MS')
    const drainS = drain?.from === 'configMap' ? Number(drain.value) / 1000 : Number.NaN
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(sleep + drainS + 5 + 5)
  })

  it('wires selectors, Service, Ingress and ScaledObject to the runner pods', () => {
    const deployment = find(objects, 'Deployment')
    const podLabels = deployment.spec.template.metadata.labels
    const matches = (sel: Record<string, string>) =>
      Object.entries(sel).every(([k, v]) => podLabels[k] === v)
    expect(matches(deployment.spec.selector.matchLabels)).toBe(true)
    expect(matches(find(objects, 'PodDisruptionBudget').spec.selector.matchLabels)).toBe(true)
    const service = find(objects, 'Service')
    expect(matches(service.spec.selector)).toBe(true)
    expect(service.spec.ports.map((p: { targetPort: string }) => p.targetPort)).toEqual(['http'])
    const backend = find(objects, 'Ingress').spec.rules[0].http.paths[0]
    expect(backend.path).toBe('/v2')
    expect(backend.backend.service.name).toBe(service.metadata.name)
    expect(service.spec.ports.map((p: { name: string }) => p.name)).toContain(
      backend.backend.service.port.name,
    )
    const so = find(objects, 'ScaledObject')
    expect(so.spec.scaleTargetRef.name).toBe(deployment.metadata.name)
    expect(deployment.spec.replicas).toBeUndefined() // KEDA owns it
  })

  it('scales on metrics the runner and the gateway really export', () => {
    const runnerMetrics = createMetrics({
      queueDepth: () => 0,
      inFlight: () => 0,
      capacity: 1,
      draining: () => false,
      cache: () => [],
    })
    const triggers = find(objects, 'ScaledObject').spec.triggers as {
      type: string
      metadata: { query: string; threshold: string }
    }[]
    expect(triggers.map((t) => t.type)).toEqual(['prometheus', 'prometheus', 'prometheus'])
    const [queue, kv, cold] = triggers
    expect(queue?.metadata.query).toContain('twinserve_runner_queue_depth')
    expect(runnerMetrics.registry.getSingleMetric('twinserve_runner_queue_depth')).toBeDefined()
    // Generation's load: reserved KV cache over one runner's budget, both gauges of the runner.
    for (const name of [
      'twinserve_runner_generation_kv_cache_bytes',
      'twinserve_runner_generation_kv_cache_capacity_bytes',
    ]) {
      expect(kv?.metadata.query).toContain(name)
      expect(runnerMetrics.registry.getSingleMetric(name)).toBeDefined()
    }
    expect(cold?.metadata.query).toContain('twinserve_gateway_cold_start_waiting')
    expect(METRIC_FAMILIES.twinserve_gateway_cold_start_waiting.type).toBe('gauge')
    for (const t of triggers) expect(Number(t.metadata.threshold)).toBeGreaterThan(0)
  })
})

describe.each(Object.entries(OVERLAYS))('overlay %s', (envName, dir) => {
  const objects = render(dir)
  const ns = find(objects, 'Namespace').metadata.name

  it('puts everything in its namespace, and the runner queries read that namespace', () => {
    for (const o of objects.filter((x) => x.kind !== 'Namespace'))
      expect(o.metadata.namespace).toBe(ns)
    const [queue, kv] = find(objects, 'ScaledObject').spec.triggers
    expect(queue.metadata.query).toBe(`sum(twinserve_runner_queue_depth{namespace="${ns}"})`)
    expect(kv.metadata.query).toBe(
      `sum(twinserve_runner_generation_kv_cache_bytes{namespace="${ns}"}) / max(twinserve_runner_generation_kv_cache_capacity_bytes{namespace="${ns}"})`,
    )
  })

  it('uses a pinned image, and an Ingress host that is the RUNNER_PUBLIC_URL runners announce', () => {
    const { container, env } = runnerContainer(objects)
    expect(container.image).toMatch(/^[\w.-]+(\/[\w.-]+)+:\d+\.\d+\.\d+$/)
    const publicUrl = env.get('RUNNER_PUBLIC_URL')
    const host = publicUrl?.from === 'configMap' ? new URL(publicUrl.value).host : ''
    const ingress = find(objects, 'Ingress')
    expect(ingress.spec.rules[0].host).toBe(host)
    expect(ingress.spec.tls[0].hosts).toEqual([host])
  })

  it(`gives the gateway's cold-start wait room for a scale from zero (wrangler env.${envName})`, () => {
    const so = find(objects, 'ScaledObject').spec
    const vars = unstable_readConfig({ config: `${REPO}wrangler.toml`, env: envName }, {})
      .vars as Record<string, string>
    const wait = Number(vars.COLD_START_WAIT_MS)
    expect(Number(vars.REQUEST_DEADLINE_MS)).toBeGreaterThan(wait)
    // From zero: KEDA's poll, a GPU pod's scheduling, image and package pull and session load all happen while
    // the gateway holds the request; the startup probe allows the runner this long to come up.
    if (so.minReplicaCount === 0) {
      const startup = runnerContainer(objects).container.startupProbe
      expect(wait / 1000).toBeGreaterThanOrEqual(so.pollingInterval + 60)
      expect(wait / 1000).toBeLessThanOrEqual(startup.periodSeconds * startup.failureThreshold)
    } else expect(so.minReplicaCount).toBeGreaterThanOrEqual(2)
  })
})

describe('strict field names', () => {
  it('every rendered object type-checks as its model interface; a misspelt field does not', () => {
    const files: Record<string, K8sObject[]> = {}
    for (const dir of KUSTOMIZATIONS) files[dir.replace(/\W/g, '-')] = render(dir)
    const deployment = structuredClone(find(render('base'), 'Deployment'))
    const c = deployment.spec.template.spec.containers[0]
    c.livenesProbe = c.livenessProbe
    delete c.livenessProbe
    files['negative-control'] = [deployment]
    const errors = typecheck(files)
    expect(errors.filter((e) => !e.includes('negative-control.ts('))).toEqual([])
    expect(errors.join('\n')).toMatch(
      /negative-control\.ts\(.*livenesProbe.*does not exist in type 'IContainer'/,
    )
  })
})
