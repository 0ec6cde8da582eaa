/**
 * Which label names a row gets (issue #13): its routed task's, the expert with the largest applied weight; none
 * for a row that applied no expert; only on class-score outputs wide enough for every expert's labels.
 */
import type { PackageManifest } from '@twinserve/shared'
import { describe, expect, it } from 'vitest'
import { labelledOutputs, labelsByColumn, rowLabels } from './routed-labels.ts'

const manifest = (
  experts: PackageManifest['experts'],
  outputs: PackageManifest['outputs'] = [{ name: 'logits', datatype: 'FP32', shape: [-1, 4] }],
) => ({ experts, outputs }) as PackageManifest

describe('routed labels', () => {
  const m = manifest([
    { name: 'b', index: 1, labels: ['x', 'y', 'z'] },
    { name: 'a', index: 0, labels: ['ham', 'spam'] },
    { name: 'c', index: 2 },
  ])
  const byColumn = labelsByColumn(m) ?? []

  it('orders label sets by expert column; none when no expert has labels', () => {
    expect(byColumn).toEqual([['ham', 'spam'], ['x', 'y', 'z'], undefined])
    expect(labelsByColumn(manifest([{ name: 'a', index: 0 }]))).toBeUndefined()
  })

  it('names the largest positive weight per row; ties to the lower column; all ≤ 0 is no task', () => {
    const w = [0.2, 0.7, 0.1, 0.5, 0.5, 0, 0, 0, 0, -1, 0, 0, 0.1, 0.1, 0.8]
    expect(rowLabels(w, 5, 3, byColumn)).toEqual([
      ['x', 'y', 'z'],
      ['ham', 'spam'],
      undefined,
      undefined,
      undefined, // the routed expert 'c' has no labels
    ])
    expect(rowLabels([0, 0.3, 0.7], 2, 3, byColumn, true)).toEqual([undefined, undefined])
    expect(rowLabels([0.6, 0.4, 0], 2, 3, byColumn, true)).toEqual([
      ['ham', 'spam'],
      ['ham', 'spam'],
    ])
  })

  it('labels float outputs [batch, …, k] with k variable or ≥ the longest label set', () => {
    const outputs: PackageManifest['outputs'] = [
      { name: 'logits', datatype: 'FP32', shape: [-1, 4] },
      { name: 'narrow', datatype: 'FP32', shape: [-1, 2] },
      { name: 'any', datatype: 'FP16', shape: [-1, -1] },
      { name: 'ids', datatype: 'INT64', shape: [-1, 4] },
      { name: 'flat', datatype: 'FP32', shape: [-1] },
    ]
    expect(labelledOutputs(manifest(m.experts, outputs), byColumn)).toEqual(['logits', 'any'])
  })
})
