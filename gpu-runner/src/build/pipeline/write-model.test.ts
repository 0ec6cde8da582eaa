import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { mlpModel, randomParams } from '../../../test-support/test-models.ts'
import { onnx } from '../../onnx/proto.ts'
import { openSession, ort } from '../../runtime/ort-session.ts'
import { openOnnx, readOnnx, readOnnxBytes, tensorToFloat32 } from '../import/read-onnx.ts'
import { locationOf, readFloat32 } from '../import/tensor-data.ts'
import { writeModel } from './write-model.ts'

const root = await mkdtemp(join(tmpdir(), 'twinserve-write-'))
afterAll(() => rm(root, { recursive: true, force: true }))

async function logits(path: string): Promise<Float32Array> {
  const { session } = await openSession(path, { provider: 'cpu' })
  try {
    const x = new ort.Tensor(
      'float32',
      Float32Array.from({ length: 16 }, (_, i) => i / 16),
      [2, 8],
    )
    return (await session.run({ x })).logits?.data as Float32Array
  } finally {
    await session.release()
  }
}

const sha = async (path: string) =>
  createHash('sha256')
    .update(await readFile(path))
    .digest('hex')

describe('writeModel (tensor by tensor, external data above a size)', () => {
  const bytes = mlpModel(randomParams(9))
  const source = join(root, 'source.onnx')

  it('writes one self-contained file or a file with external data; both compute the source model', async () => {
    await writeFile(source, bytes)
    // A skeleton: weights are read from the source file as each is written.
    const skeleton = await openOnnx(source)
    const expected = await logits(source)
    const inline = await writeModel(join(root, 'inline.onnx'), skeleton.model)
    const external = await writeModel(join(root, 'ext', 'model.onnx'), skeleton.model, {
      externalAbove: 0,
    })
    expect(inline.files.map((f) => f.path)).toEqual([join(root, 'inline.onnx')])
    expect(external.files.map((f) => f.path)).toEqual([
      join(root, 'ext', 'model.onnx'),
      join(root, 'ext', 'model.onnx.data'),
    ])
    for (const f of [...inline.files, ...external.files]) {
      expect(f.sha256).toBe(await sha(f.path))
      expect(f.bytes).toBe((await stat(f.path)).size)
    }
    expect(Array.from(await logits(join(root, 'inline.onnx')))).toEqual(Array.from(expected))
    expect(Array.from(await logits(join(root, 'ext', 'model.onnx')))).toEqual(Array.from(expected))
    // The inline file is plain ONNX: every tensor's data is in it.
    const read = readOnnxBytes(await readFile(join(root, 'inline.onnx')), 'inline')
    const original = readOnnxBytes(bytes, 'source')
    for (const [name, t] of original.initializers)
      if (t.dataType === 1)
        expect(Array.from(tensorToFloat32(read.initializers.get(name) ?? {}))).toEqual(
          Array.from(tensorToFloat32(t)),
        )
    // The external file's locations are relative; readOnnx resolves them.
    const ext = onnx.ModelProto.decode(await readFile(join(root, 'ext', 'model.onnx')))
    expect(locationOf(ext.graph?.initializer?.[0] ?? {})?.file).toBe('model.onnx.data')
    expect((await readOnnx(join(root, 'ext', 'model.onnx'))).initializers.size).toBe(
      original.initializers.size,
    )
  })

  it('returns a skeleton pointing into what it wrote, and takes values computed while writing', async () => {
    const skeleton = await openOnnx(source)
    const doubled = await writeModel(join(root, 'doubled.onnx'), skeleton.model, {
      valueFor: async (t) => {
        const v = await readFloat32(t)
        const out = v.map((x) => 2 * x)
        return new Uint8Array(out.buffer)
      },
    })
    const original = readOnnxBytes(bytes, 'source')
    for (const t of doubled.skeleton.graph?.initializer ?? []) {
      if (t.dataType !== 1) continue
      expect(locationOf(t)?.file).toBe(join(root, 'doubled.onnx'))
      const want = tensorToFloat32(original.initializers.get(t.name ?? '') ?? {}).map((x) => 2 * x)
      expect(Array.from(await readFloat32(t))).toEqual(Array.from(want))
    }
  })
})
