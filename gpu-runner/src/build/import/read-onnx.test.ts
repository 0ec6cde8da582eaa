import { mkdir, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { mlpModel, randomParams, writeWithExternalData } from '../../../test-support/test-models.ts'
import { onnx } from '../../onnx/proto.ts'
import { openSession, ort } from '../../runtime/ort-session.ts'
import { openOnnx, readOnnx, readOnnxBytes, tensorToFloat32 } from './read-onnx.ts'
import { locationOf, readFloat32 } from './tensor-data.ts'

const root = await mkdtemp(join(tmpdir(), 'twinserve-read-'))
afterAll(() => rm(root, { recursive: true, force: true }))

describe('readOnnx', () => {
  const bytes = mlpModel(randomParams(3))
  const inline = readOnnxBytes(bytes, 'inline')

  it('resolves external data into the same values as the inline model', async () => {
    const dir = join(root, 'ext')
    const path = await writeWithExternalData(bytes, dir, 'model.onnx')
    // The file really is external: its initializers carry no data of their own.
    const raw = onnx.ModelProto.decode(await readFile(path))
    expect(raw.graph?.initializer?.[0]?.dataLocation).toBe(onnx.TensorProto.DataLocation.EXTERNAL)
    const m = await readOnnx(path)
    for (const [name, t] of inline.initializers)
      expect(Array.from(tensorToFloat32(m.initializers.get(name) ?? {}))).toEqual(
        Array.from(tensorToFloat32(t)),
      )
    expect(m.sizeBytes).toBeGreaterThan((await readFile(path)).byteLength)
    // And onnxruntime agrees that it is a valid model with external data.
    const { session } = await openSession(path, { provider: 'cpu' })
    const out = await session.run({
      x: new ort.Tensor('float32', new Float32Array(8).fill(0.5), [1, 8]),
    })
    expect(out.logits?.dims).toEqual([1, 4])
    await session.release()
  })

  it('refuses missing, truncated and escaping external data with the initializer named', async () => {
    const dir = join(root, 'ext-bad')
    const path = await writeWithExternalData(bytes, dir, 'model.onnx')
    await truncate(join(dir, 'model.onnx.data'), 100)
    await expect(readOnnx(path)).rejects.toThrow(
      /initializer 'fc\d\.\w+': external data file 'model.onnx.data' is truncated/,
    )
    await rm(join(dir, 'model.onnx.data'))
    await expect(readOnnx(path)).rejects.toThrow(/external data file 'model.onnx.data' is missing/)
    const m = onnx.ModelProto.decode(await readFile(path))
    const first = m.graph?.initializer?.[0]
    if (first) first.externalData = [{ key: 'location', value: '../../etc/passwd' }]
    await writeFile(path, onnx.ModelProto.encode(m).finish())
    await expect(readOnnx(path)).rejects.toThrow(/leaves the model directory/)
  })

  it('refuses a missing file and a corrupt file with INVALID_MODEL naming the path', async () => {
    await expect(readOnnx(join(root, 'nope.onnx'))).rejects.toMatchObject({
      code: 'INVALID_MODEL',
      message: expect.stringMatching(/nope.onnx: file not found/),
    })
    const corrupt = join(root, 'corrupt.onnx')
    await writeFile(
      corrupt,
      Uint8Array.from({ length: 200 }, (_, i) => (i * 37) % 256),
    )
    await expect(readOnnx(corrupt)).rejects.toThrow(/corrupt.onnx: is not a readable ONNX model/)
    const truncated = join(root, 'truncated.onnx')
    await writeFile(truncated, bytes.subarray(0, Math.floor(bytes.length / 2)))
    await expect(readOnnx(truncated)).rejects.toThrow(
      /truncated.onnx: is not a readable ONNX model/,
    )
  })
})

describe('openOnnx (a skeleton: float tensors stay on disk)', () => {
  const bytes = mlpModel(randomParams(4))
  const inline = readOnnxBytes(bytes, 'inline')

  it('reads no weight into memory, and each float tensor reads back from the file or its external data', async () => {
    for (const external of [false, true]) {
      const dir = join(root, `open-${external}`)
      const path = external
        ? await writeWithExternalData(bytes, dir, 'model.onnx')
        : join(dir, 'model.onnx')
      if (!external) {
        await mkdir(dir, { recursive: true })
        await writeFile(path, bytes)
      }
      const m = await openOnnx(path)
      expect(m.liftedConstants).toEqual([])
      for (const [name, t] of inline.initializers) {
        const lazy = m.initializers.get(name) ?? {}
        if (t.dataType !== 1) continue
        expect(lazy.rawData?.byteLength ?? 0, name).toBe(0)
        expect(locationOf(lazy)?.file, name).toBe(
          join(dir, external ? 'model.onnx.data' : 'model.onnx'),
        )
        expect(Array.from(await readFloat32(lazy)), name).toEqual(Array.from(tensorToFloat32(t)))
      }
    }
  })

  it('refuses corrupt and truncated files, and external data that leaves the model directory', async () => {
    const corrupt = join(root, 'open-corrupt.onnx')
    await writeFile(
      corrupt,
      Uint8Array.from({ length: 200 }, (_, i) => (i * 37) % 256),
    )
    await expect(openOnnx(corrupt)).rejects.toThrow(
      /open-corrupt.onnx: is not a readable ONNX model/,
    )
    const truncated = join(root, 'open-truncated.onnx')
    await writeFile(truncated, bytes.subarray(0, Math.floor(bytes.length / 2)))
    await expect(openOnnx(truncated)).rejects.toMatchObject({
      code: 'INVALID_MODEL',
      message: expect.stringMatching(/open-truncated.onnx: is not a readable ONNX model/),
    })
    await expect(openOnnx(join(root, 'none.onnx'))).rejects.toThrow(/none.onnx: file not found/)
    const dir = join(root, 'open-escape')
    const path = await writeWithExternalData(bytes, dir, 'model.onnx')
    const m = onnx.ModelProto.decode(await readFile(path))
    const first = m.graph?.initializer?.[0]
    if (first) first.externalData = [{ key: 'location', value: '/etc/passwd' }]
    await writeFile(path, onnx.ModelProto.encode(m).finish())
    await expect(openOnnx(path)).rejects.toThrow(/leaves the model directory/)
  })
})
