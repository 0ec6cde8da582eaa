/**
 * First-order optimisers over Float32Arrays, updated in place. The per-step cost is one pass over the
 * parameters (~0.3M floats for the zoo's MLP, well under a millisecond), small next to the ORT forward/backward.
 * @module
 */

export interface ParamSlot {
  data: Float32Array
  /** Apply weight decay to this tensor (matrices yes, biases no, as is customary). */
  decay: boolean
}

export interface Optimizer {
  /** Updates every slot's data in place from its gradient (same order and lengths). */
  step(slots: readonly ParamSlot[], grads: readonly Float32Array[], lr: number): void
}

export interface AdamOptions {
  beta1?: number
  beta2?: number
  eps?: number
  /** Decoupled weight decay (AdamW); 0 = plain Adam. */
  weightDecay?: number
}

/**
 * Adam with bias correction; decoupled weight decay when `weightDecay` > 0.
 * @see https://arxiv.org/abs/1412.6980 (Adam) and https://arxiv.org/abs/1711.05101 (AdamW)
 */
export function createAdam(lengths: readonly number[], opts: AdamOptions = {}): Optimizer {
  const b1 = opts.beta1 ?? 0.9
  const b2 = opts.beta2 ?? 0.999
  const eps = opts.eps ?? 1e-8
  const wd = opts.weightDecay ?? 0
  const m = lengths.map((n) => new Float32Array(n))
  const v = lengths.map((n) => new Float32Array(n))
  let t = 0
  return {
    step(slots, grads, lr) {
      t++
      const c1 = 1 - b1 ** t
      const c2 = 1 - b2 ** t
      const stepSize = lr / c1
      const sqrtC2 = Math.sqrt(c2)
      slots.forEach((slot, s) => {
        const p = slot.data
        const g = grads[s] as Float32Array
        const ms = m[s] as Float32Array
        const vs = v[s] as Float32Array
        const decay = slot.decay ? 1 - lr * wd : 1
        for (let k = 0; k < p.length; k++) {
          const gk = g[k] as number
          const mk = b1 * (ms[k] as number) + (1 - b1) * gk
          const vk = b2 * (vs[k] as number) + (1 - b2) * gk * gk
          ms[k] = mk
          vs[k] = vk
          // Same algebra as Kingma & Ba's "efficient" form: lr/c1 · m / (sqrt(v)/sqrt(c2) + eps).
          p[k] = (p[k] as number) * decay - (stepSize * mk) / (Math.sqrt(vk) / sqrtC2 + eps)
        }
      })
    },
  }
}

export interface SgdOptions {
  momentum?: number
  weightDecay?: number
}

/** SGD with (heavy-ball) momentum and L2 weight decay folded into the gradient. */
export function createSgd(lengths: readonly number[], opts: SgdOptions = {}): Optimizer {
  const mu = opts.momentum ?? 0.9
  const wd = opts.weightDecay ?? 0
  const vel = lengths.map((n) => new Float32Array(n))
  return {
    step(slots, grads, lr) {
      slots.forEach((slot, s) => {
        const p = slot.data
        const g = grads[s] as Float32Array
        const vs = vel[s] as Float32Array
        const l2 = slot.decay ? wd : 0
        for (let k = 0; k < p.length; k++) {
          const vk = mu * (vs[k] as number) + (g[k] as number) + l2 * (p[k] as number)
          vs[k] = vk
          p[k] = (p[k] as number) - lr * vk
        }
      })
    },
  }
}
