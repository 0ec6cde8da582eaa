/**
 * Prometheus metrics of generation (issue 14), the series an operator of vLLM or TGI reads: sequences waiting and
 * running, KV-cache bytes against the budget, prompt and completion tokens, how sequences end, time to first token
 * and time per output token; and the twin's own: decode passes by path (factored, merged with fed matrices, baked:
 * generate/merged-mixes.ts), which says whether the merged decode graph and baked mixes are doing their work, and
 * the likelihood scoring passes of routing (generate/prompt-likelihood.ts).
 *
 * The engines' state and pass counts are read at scrape time (`engines`); each finished sequence is counted by
 * `finished`, which the runner gives the engines as their `onFinish`.
 * @module
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { GenerationEngine, SequenceStats } from '../generate/engine.ts'

export type GenerationEngines = () => readonly { model: string; engine: GenerationEngine }[]

/** Decode passes of one engine by the session they ran on. */
function passesByPath(engine: GenerationEngine): Record<'factored' | 'merged' | 'baked', number> {
  const c = engine.counters
  return {
    factored: c.decodePasses - c.mergedPasses,
    merged: c.mergedPasses - c.bakedPasses,
    baked: c.bakedPasses,
  }
}

/** Registers the series; returns the engines' `onFinish` for a model. */
export function generationMetrics(registry: Registry, engines: GenerationEngines) {
  new Gauge({
    name: 'twinserve_runner_generation_sequences',
    help: 'Sequences admitted for generation: waiting for their prefill, or running (decoding).',
    labelNames: ['model', 'state'] as const,
    registers: [registry],
    collect() {
      this.reset()
      for (const { model, engine } of engines()) {
        const { waiting, running } = engine.sequences
        this.set({ model, state: 'waiting' }, waiting)
        this.set({ model, state: 'running' }, running)
      }
    },
  })
  new Gauge({
    name: 'twinserve_runner_generation_kv_cache_bytes',
    help: 'KV-cache bytes reserved by admitted sequences (each reserves its prompt and max_tokens at admission).',
    labelNames: ['model'] as const,
    registers: [registry],
    collect() {
      this.reset()
      for (const { model, engine } of engines()) this.set({ model }, engine.kvBytes)
    },
  })
  new Gauge({
    name: 'twinserve_runner_generation_kv_cache_capacity_bytes',
    help: 'The KV-cache budget (--kv-cache-mb): a sequence that would go past it is refused with 503.',
    labelNames: ['model'] as const,
    registers: [registry],
    collect() {
      this.reset()
      for (const { model, engine } of engines()) this.set({ model }, engine.options.maxBytes)
    },
  })
  new Counter({
    name: 'twinserve_runner_generation_decode_passes_total',
    help: 'Batched decode passes, by path: factored (rows with different mixes), merged (one mix, its matrices fed), baked (one mix in a session of its own).',
    labelNames: ['model', 'path'] as const,
    registers: [registry],
    collect() {
      this.reset()
      for (const { model, engine } of engines())
        for (const [path, n] of Object.entries(passesByPath(engine)))
          if (n > 0) this.inc({ model, path }, n)
    },
  })
  new Counter({
    name: 'twinserve_runner_generation_scoring_passes_total',
    help: "Passes that scored prompts by each expert's likelihood to route them (the package's router.prompt_likelihood).",
    labelNames: ['model'] as const,
    registers: [registry],
    collect() {
      this.reset()
      for (const { model, engine } of engines())
        if (engine.counters.likelihoodPasses > 0)
          this.inc({ model }, engine.counters.likelihoodPasses)
    },
  })
  const promptTokens = new Counter({
    name: 'twinserve_runner_generation_prompt_tokens_total',
    help: 'Prompt tokens of finished sequences.',
    labelNames: ['model'] as const,
    registers: [registry],
  })
  const completionTokens = new Counter({
    name: 'twinserve_runner_generation_completion_tokens_total',
    help: 'Tokens sampled by finished sequences (a stop token included).',
    labelNames: ['model'] as const,
    registers: [registry],
  })
  const finishedTotal = new Counter({
    name: 'twinserve_runner_generation_finished_total',
    help: 'Sequences ended, by reason: stop, length, cancelled (the client left), error (a pass failed).',
    labelNames: ['model', 'reason'] as const,
    registers: [registry],
  })
  const ttft = new Histogram({
    name: 'twinserve_runner_generation_time_to_first_token_seconds',
    help: 'Seconds from admission to the first token (queueing, routing and prefill).',
    labelNames: ['model'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  })
  const tpot = new Histogram({
    name: 'twinserve_runner_generation_time_per_output_token_seconds',
    help: "A sequence's mean seconds between tokens after its first (the decode step it saw).",
    labelNames: ['model'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [registry],
  })
  /** The `onFinish` of `model`'s engine: counts one finished sequence. */
  return (model: string) =>
    (s: SequenceStats): void => {
      promptTokens.inc({ model }, s.promptTokens)
      completionTokens.inc({ model }, s.completionTokens)
      finishedTotal.inc({ model, reason: s.reason })
      if (s.ttftSeconds !== undefined) ttft.observe({ model }, s.ttftSeconds)
      if (s.secondsPerToken !== undefined) tpot.observe({ model }, s.secondsPerToken)
    }
}
