/**
 * Per-model inference statistics in Triton's shape (`GET /v2/models/{m}/stats`, the statistics extension that
 * tritonclient's `get_inference_statistics()` reads). Durations are cumulative nanoseconds, as Triton reports
 * them. What Twinserve measures maps onto Triton's phases as follows: `queue` is the wait from submission to the
 * start of the batch that ran the request; `compute_infer` is that batch's run (merge included); input and output
 * conversion are not timed apart and stay 0, as do the response cache counters (there is no response cache).
 * @see https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_statistics.md
 * @module
 */

interface Duration {
  count: number
  ns: number
}

const zero = (): Duration => ({ count: 0, ns: 0 })
const add = (d: Duration, ns: number, count = 1) => {
  d.count += count
  d.ns += Math.round(ns)
}

interface BatchStats {
  batch_size: number
  compute_input: Duration
  compute_infer: Duration
  compute_output: Duration
}

class ModelStats {
  lastInference = 0
  inferenceCount = 0
  executionCount = 0
  readonly success = zero()
  readonly fail = zero()
  readonly queue = zero()
  readonly computeInfer = zero()
  readonly batches = new Map<number, BatchStats>()
}

export class InferenceStatistics {
  private readonly models = new Map<string, ModelStats>()

  private of(model: string): ModelStats {
    let s = this.models.get(model)
    if (!s) {
      s = new ModelStats()
      this.models.set(model, s)
    }
    return s
  }

  /** One batch run: `rows` inference rows over `requests` requests, `ns` long. */
  batch(model: string, rows: number, requests: number, ns: number): void {
    const s = this.of(model)
    s.executionCount++
    s.inferenceCount += rows
    add(s.computeInfer, ns * requests, requests)
    let b = s.batches.get(rows)
    if (!b) {
      b = { batch_size: rows, compute_input: zero(), compute_infer: zero(), compute_output: zero() }
      s.batches.set(rows, b)
    }
    add(b.compute_infer, ns)
  }

  /** A request answered: `ns` from arrival to answer, of which `queueNs` waiting for its batch. */
  succeeded(model: string, ns: number, queueNs: number): void {
    const s = this.of(model)
    add(s.success, ns)
    add(s.queue, queueNs)
    s.lastInference = Date.now()
  }

  /** A request for a known model that failed after it was accepted (validation, deadline, model error). */
  failed(model: string, ns: number): void {
    add(this.of(model).fail, ns)
  }

  /** Triton's `ModelStatistics` JSON for one model. */
  snapshot(model: string, version: string) {
    const s = this.models.get(model) ?? new ModelStats()
    return {
      name: model,
      version,
      last_inference: s.lastInference,
      inference_count: s.inferenceCount,
      execution_count: s.executionCount,
      inference_stats: {
        success: { ...s.success },
        fail: { ...s.fail },
        queue: { ...s.queue },
        compute_input: zero(),
        compute_infer: { ...s.computeInfer },
        compute_output: zero(),
        cache_hit: zero(),
        cache_miss: zero(),
      },
      batch_stats: [...s.batches.values()]
        .sort((a, b) => a.batch_size - b.batch_size)
        .map((b) => ({ ...b, compute_infer: { ...b.compute_infer } })),
    }
  }
}
