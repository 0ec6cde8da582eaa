/**
 * The runner image's package pull (infra/runner-image): real twin packages served by an S3 stand-in that checks
 * SigV4 signatures with its own verifier, pulled into a temporary cache and checked with the runner's
 * loadPackage; failures name the source and file and leave the cache as it was. Then the image entrypoint end to
 * end: pull, then the real runner serving the pulled package, then SIGTERM.
 */
import { spawn } from 'node:child_process'
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadPackage } from '@twinserve/gpu-runner/package'
import { PULL_ENV, PullError, parsePullEnv } from '@twinserve/infra/runner-image/pull-config.ts'
import { pullPackages } from '@twinserve/infra/runner-image/pull-packages.ts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writeTwinFixture } from '../fixtures/twin-fixture.ts'
import { type ObjectStoreStandIn, startObjectStore } from './object-store-stand-in.ts'
import { verifySigV4 } from './sigv4-verify.ts'

const ENTRYPOINT = fileURLToPath(new URL('../../infra/runner-image/entrypoint.sh', import.meta.url))
const CREDS = { accessKeyId: 'AKIDTWINSERVETEST', secretAccessKey: 'test-secret/with+chars' }

describe('sigv4 verifier (the stand-in’s own check)', () => {
  // AWS's published example: GET Object, first 10 bytes of test.txt from examplebucket.
  const example = {
    method: 'GET',
    path: '/test.txt',
    query: '',
    headers: {
      host: 'examplebucket.s3.amazonaws.com',
      range: 'bytes=0-9',
      'x-amz-content-sha256': 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
      'x-amz-date': '20130524T000000Z',
      authorization:
        'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41',
    },
  }
  const awsCreds = [
    {
      accessKeyId: 'AKIAIOSFODNN7EXAMPLE',
      secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
    },
  ]
  const at = new Date('2013-05-24T00:05:00Z')

  it('accepts AWS’s example and refuses it with any part changed', () => {
    expect(verifySigV4(example, awsCreds, at)).toEqual({
      ok: true,
      accessKeyId: 'AKIAIOSFODNN7EXAMPLE',
    })
    const changed = (h: Record<string, string>) =>
      verifySigV4({ ...example, headers: { ...example.headers, ...h } }, awsCreds, at)
    expect(changed({ range: 'bytes=0-10' })).toMatchObject({
      ok: false,
      code: 'SignatureDoesNotMatch',
    })
    expect(verifySigV4({ ...example, path: '/test2.txt' }, awsCreds, at)).toMatchObject({
      ok: false,
    })
    expect(
      verifySigV4(
        example,
        [{ ...awsCreds[0], secretAccessKey: 'other' } as (typeof awsCreds)[0]],
        at,
      ),
    ).toMatchObject({ ok: false, code: 'SignatureDoesNotMatch' })
    expect(verifySigV4(example, awsCreds, new Date('2013-05-25T00:00:00Z'))).toMatchObject({
      ok: false,
      code: 'RequestTimeTooSkewed',
    })
    expect(changed({ authorization: '' })).toMatchObject({ ok: false, code: 'AccessDenied' })
  })
})

describe('parsePullEnv', () => {
  it('reads sources, defaults and credentials; PULL_ENV lists every variable', () => {
    const c = parsePullEnv({
      PACKAGE_SOURCES: ' s3://models/pk/demo/ , https://cdn.example.com/packages/b ',
      AWS_ACCESS_KEY_ID: 'a',
      AWS_SECRET_ACCESS_KEY: 'b',
    })
    expect(c.sources).toEqual([
      { kind: 's3', url: 's3://models/pk/demo/', bucket: 'models', prefix: 'pk/demo' },
      {
        kind: 'http',
        url: 'https://cdn.example.com/packages/b',
        base: 'https://cdn.example.com/packages/b',
      },
    ])
    expect(c.cacheDir).toBe('/var/lib/twinserve/packages')
    expect(c.region).toBe('us-east-1')
    expect(PULL_ENV).toEqual([
      'PACKAGE_SOURCES',
      'PACKAGE_CACHE_DIR',
      'S3_ENDPOINT',
      'AWS_REGION',
      'AWS_ACCESS_KEY_ID',
      'AWS_SECRET_ACCESS_KEY',
      'AWS_SESSION_TOKEN',
    ])
  })

  it.each([
    [{}, /PACKAGE_SOURCES: no package sources/],
    [{ PACKAGE_SOURCES: 'ftp://x/y' }, /PACKAGE_SOURCES: 'ftp:\/\/x\/y': unsupported scheme ftp:/],
    [{ PACKAGE_SOURCES: 'not a url' }, /'not a url' is not a URL/],
    [{ PACKAGE_SOURCES: 'https://x/y?sig=1' }, /takes no query/],
    [
      { PACKAGE_SOURCES: 's3://b/p', AWS_ACCESS_KEY_ID: 'a' },
      /AWS_SECRET_ACCESS_KEY: .*set together/,
    ],
    [{ PACKAGE_SOURCES: 's3://b/p', S3_ENDPOINT: 'minio:9000' }, /S3_ENDPOINT: /],
  ])('refuses %j, naming the variable', (env, message) => {
    expect(() => parsePullEnv(env)).toThrow(PullError)
    expect(() => parsePullEnv(env)).toThrow(message)
  })
})

describe('pullPackages against an S3 stand-in', () => {
  let storeRoot: string
  let store: ObjectStoreStandIn
  let work: string
  let fixtureName: string
  const pkgDir = () => join(storeRoot, 'models', 'pk', 'demo')
  const env = (cacheDir: string, extra: Record<string, string> = {}) =>
    parsePullEnv({
      PACKAGE_SOURCES: 's3://models/pk/demo',
      PACKAGE_CACHE_DIR: cacheDir,
      S3_ENDPOINT: store.url,
      AWS_ACCESS_KEY_ID: CREDS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: CREDS.secretAccessKey,
      ...extra,
    })
  const fast = { backoffMs: 5 }
  const leftovers = async (dir: string) =>
    (await readdir(dir)).filter((n) => n.startsWith('.pull-') || n.startsWith('.old-'))

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'twinserve-pull-'))
    storeRoot = join(work, 'store')
    const fx = await writeTwinFixture(pkgDir(), { name: 'pull-demo' })
    fixtureName = fx.manifest.name
    store = await startObjectStore({ root: storeRoot, credentials: [CREDS] })
  })
  afterAll(async () => {
    await store?.close()
    await rm(work, { recursive: true, force: true })
  })

  it('pulls a signed package, verifies it, and reuses the cached copy next time', async () => {
    const cache = join(work, 'cache-ok')
    const [p] = await pullPackages(env(cache), fast)
    expect(p).toMatchObject({ name: fixtureName, dir: join(cache, fixtureName), reused: false })
    const loaded = await loadPackage(join(cache, fixtureName))
    const manifest = JSON.parse(await readFile(join(pkgDir(), 'manifest.json'), 'utf8'))
    expect(loaded.manifest).toEqual(manifest)
    expect(p?.files).toBe(Object.keys(manifest.files).length)
    expect(p?.bytes).toBeGreaterThan(0)
    expect(await leftovers(cache)).toEqual([])

    const before = store.requests.length
    const [again] = await pullPackages(env(cache), fast)
    expect(again).toMatchObject({ reused: true, bytes: 0 })
    expect(store.requests.slice(before)).toEqual(['models/pk/demo/manifest.json'])
  })

  it('refuses a wrong secret with the store’s answer and writes nothing', async () => {
    const cache = join(work, 'cache-badsecret')
    const config = env(cache, { AWS_SECRET_ACCESS_KEY: 'not-the-secret' })
    await expect(pullPackages(config, fast)).rejects.toThrow(
      's3://models/pk/demo/manifest.json: HTTP 403 SignatureDoesNotMatch',
    )
    expect(await readdir(cache).catch(() => [])).toEqual([])
  })

  it('refuses unsigned requests when the bucket is private', async () => {
    const cache = join(work, 'cache-anon')
    const config = parsePullEnv({
      PACKAGE_SOURCES: 's3://models/pk/demo',
      PACKAGE_CACHE_DIR: cache,
      S3_ENDPOINT: store.url,
    })
    await expect(pullPackages(config, fast)).rejects.toThrow(/HTTP 403 AccessDenied/)
  })

  it('retries transient 503s and then succeeds', async () => {
    const cache = join(work, 'cache-retry')
    const manifest = JSON.parse(await readFile(join(pkgDir(), 'manifest.json'), 'utf8'))
    const model = `models/pk/demo/${manifest.model.file}`
    store.failNext(model, 2)
    const before = store.requests.length
    const [p] = await pullPackages(env(cache), fast)
    expect(p?.reused).toBe(false)
    expect(store.requests.slice(before).filter((r) => r === model)).toHaveLength(3)
  })

  it('gives up after the attempts, naming the file', async () => {
    const cache = join(work, 'cache-503')
    const manifest = JSON.parse(await readFile(join(pkgDir(), 'manifest.json'), 'utf8'))
    const model = `models/pk/demo/${manifest.model.file}`
    store.failNext(model, 10)
    await expect(pullPackages(env(cache), { backoffMs: 1, attempts: 3 })).rejects.toThrow(
      `s3://models/pk/demo/${manifest.model.file}: HTTP 503 SlowDown`,
    )
    store.failNext(model, 0)
    expect(await leftovers(cache)).toEqual([])
    expect(await readdir(cache)).toEqual([])
  })

  it('keeps the verified cached copy when a new version is tampered, truncated or incomplete', async () => {
    const cache = join(work, 'cache-tamper')
    await pullPackages(env(cache), fast)
    const good = await readFile(join(cache, fixtureName, 'manifest.json'), 'utf8')

    // v2 in the store: same files, a changed manifest (new createdAt), and one file altered after hashing.
    const v2 = join(storeRoot, 'models', 'pk', 'v2')
    await cp(pkgDir(), v2, { recursive: true })
    const manifest = JSON.parse(good)
    await writeFile(join(v2, 'manifest.json'), JSON.stringify({ ...manifest, createdAt: 'v2' }))
    const file = join(v2, manifest.model.file)
    const bytes = await readFile(file)
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0xff
    await writeFile(file, bytes)
    const v2env = env(cache, { PACKAGE_SOURCES: 's3://models/pk/v2' })
    await expect(pullPackages(v2env, fast)).rejects.toThrow(
      `s3://models/pk/v2: pulled files fail verification: package`,
    )
    await expect(pullPackages(v2env, fast)).rejects.toThrow(/does not match its sha256/)

    store.truncate(`models/pk/v2/${manifest.model.file}`)
    await expect(pullPackages(v2env, fast)).rejects.toThrow(/download interrupted|does not match/)

    await rm(file)
    await expect(pullPackages(v2env, fast)).rejects.toThrow(
      `s3://models/pk/v2/${manifest.model.file}: HTTP 404 NoSuchKey`,
    )

    expect(await readFile(join(cache, fixtureName, 'manifest.json'), 'utf8')).toBe(good)
    await expect(loadPackage(join(cache, fixtureName))).resolves.toBeDefined()
    expect(await leftovers(cache)).toEqual([])
  })

  it('refuses a manifest that fails its schema, and two sources with one package name', async () => {
    const bad = join(storeRoot, 'models', 'pk', 'bad')
    await cp(pkgDir(), bad, { recursive: true })
    await writeFile(join(bad, 'manifest.json'), JSON.stringify({ format: 'something else' }))
    const cache = join(work, 'cache-bad')
    await expect(
      pullPackages(env(cache, { PACKAGE_SOURCES: 's3://models/pk/bad' }), fast),
    ).rejects.toThrow(/s3:\/\/models\/pk\/bad\/manifest.json: package .*manifest.json is invalid/)

    const twin = join(storeRoot, 'models', 'pk', 'twin')
    await cp(pkgDir(), twin, { recursive: true })
    await expect(
      pullPackages(
        env(cache, { PACKAGE_SOURCES: 's3://models/pk/demo,s3://models/pk/twin' }),
        fast,
      ),
    ).rejects.toThrow(`both hold a package named '${fixtureName}'`)
  })

  it('pulls over plain HTTP(S) from a public store', async () => {
    const open = await startObjectStore({ root: storeRoot })
    try {
      const cache = join(work, 'cache-http')
      const config = parsePullEnv({
        PACKAGE_SOURCES: `${open.url}/models/pk/demo/`,
        PACKAGE_CACHE_DIR: cache,
      })
      const [p] = await pullPackages(config, fast)
      await expect(loadPackage(p?.dir ?? '')).resolves.toBeDefined()
    } finally {
      await open.close()
    }
  })

  it('entrypoint: pulls, then the runner serves the package and drains on SIGTERM', async () => {
    const cache = join(work, 'cache-entrypoint')
    const child = spawn(
      'sh',
      [ENTRYPOINT, '--port', '0', '--provider', 'cpu', '--threads', '1', '--insecure-local'],
      {
        env: {
          PATH: process.env.PATH ?? '',
          HOME: process.env.HOME ?? '',
          RUNNER_HOST: '127.0.0.1',
          PACKAGE_SOURCES: 's3://models/pk/demo',
          PACKAGE_CACHE_DIR: cache,
          S3_ENDPOINT: store.url,
          AWS_ACCESS_KEY_ID: CREDS.accessKeyId,
          AWS_SECRET_ACCESS_KEY: CREDS.secretAccessKey,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    )
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => {
      stdout += d
    })
    child.stderr.on('data', (d: Buffer) => {
      stderr += d
    })
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)))
    try {
      const port = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no listening line:\n${stdout}\n${stderr}`)),
          30_000,
        )
        const check = () => {
          const line = stdout
            .split('\n')
            .map((l) => {
              try {
                return JSON.parse(l) as { msg?: string; port?: number }
              } catch {
                return {}
              }
            })
            .find((l) => l.msg === 'listening')
          if (line?.port) {
            clearTimeout(timer)
            resolve(line.port)
          }
        }
        child.stdout.on('data', check)
        void exited.then((code) => reject(new Error(`exited ${code}:\n${stdout}\n${stderr}`)))
      })
      expect(stderr).toContain('"msg":"package pulled"')
      const base = `http://127.0.0.1:${port}`
      expect((await fetch(`${base}/v2/health/ready`)).status).toBe(200)
      const meta = (await (await fetch(`${base}/v2/models/${fixtureName}`)).json()) as {
        name: string
      }
      expect(meta.name).toBe(fixtureName)
    } finally {
      child.kill('SIGTERM')
    }
    expect(await exited).toBe(0)
  })

  it('entrypoint: a failed pull stops the container before the runner starts', async () => {
    const child = spawn('sh', [ENTRYPOINT, '--port', '0', '--insecure-local'], {
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '',
        PACKAGE_SOURCES: 's3://models/pk/missing',
        PACKAGE_CACHE_DIR: join(work, 'cache-fail'),
        S3_ENDPOINT: store.url,
        AWS_ACCESS_KEY_ID: CREDS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: CREDS.secretAccessKey,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    child.stdout.on('data', (d: Buffer) => {
      output += d
    })
    child.stderr.on('data', (d: Buffer) => {
      output += d
    })
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)))
    expect(code).toBe(1)
    expect(output).toContain('package pull failed')
    expect(output).toContain('s3://models/pk/missing/manifest.json: HTTP 404 NoSuchKey')
    expect(output).not.toContain('"msg":"listening"')
  })
})
