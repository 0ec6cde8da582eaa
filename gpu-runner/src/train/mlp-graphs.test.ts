import { describe, expect, it } from 'vitest'
import { blobs, oneHot, referenceLoss } from '../../test-support/train-helpers.ts'
import { initMlp } from './mlp.ts'
import { MlpSessions } from './mlp-sessions.ts'

describe('training graph (ORT forward + backward)', () => {
  it('computes the loss of an independent double-precision reference', async () => {
    const sizes = [5, 7, 6, 4]
    const w = initMlp(sizes, 3)
    const { x, y } = blobs(4, 5, 3, 11)
    const s = await MlpSessions.open(sizes)
    try {
      const { loss, logits } = await s.lossAndGradients(w, x, oneHot(y, 4))
      expect(loss).toBeCloseTo(referenceLoss(w, x, y), 5)
      expect(logits.length).toBe(12 * 4)
    } finally {
      await s.release()
    }
  })

  it('gives every gradient of a tiny MLP as central finite differences of the reference loss do', async () => {
    const sizes = [5, 7, 6, 4]
    const w = initMlp(sizes, 5)
    // Non-zero biases so that the bias gradients are exercised away from the symmetric start.
    for (const l of w.layers)
      for (let k = 0; k < l.bias.length; k++) l.bias[k] = 0.1 * Math.sin(k + 1)
    const { x, y } = blobs(4, 5, 3, 7)
    const s = await MlpSessions.open(sizes)
    let checked = 0
    try {
      const { grads } = await s.lossAndGradients(w, x, oneHot(y, 4))
      // Steps are on float32 weights, so the effective step (after rounding) is what we divide by.
      const h = 1e-3
      w.layers.forEach((layer, i) => {
        for (const [tensor, grad] of [
          [layer.weight, grads[i]?.weight],
          [layer.bias, grads[i]?.bias],
        ] as const) {
          expect(grad?.length).toBe(tensor.length)
          for (let k = 0; k < tensor.length; k++) {
            const orig = tensor[k] as number
            tensor[k] = orig + h
            const up = tensor[k] as number
            const lp = referenceLoss(w, x, y)
            tensor[k] = orig - h
            const down = tensor[k] as number
            const lm = referenceLoss(w, x, y)
            tensor[k] = orig
            const fd = (lp - lm) / (up - down)
            expect(Math.abs((grad?.[k] as number) - fd)).toBeLessThan(2e-4 + 2e-3 * Math.abs(fd))
            checked++
          }
        }
      })
    } finally {
      await s.release()
    }
    expect(checked).toBe(5 * 7 + 7 + 7 * 6 + 6 + 6 * 4 + 4)
  })
})
