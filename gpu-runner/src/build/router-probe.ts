/**
 * The recipe's router alone, without building a package: the shared merge is written once to a scratch
 * directory, then each arm (a change to `router`: feature(s), pooling, bag of tokens, width, training) extracts
 * its features from the shared model, trains on the routing data's split as `twinserve build` would, and predicts
 * the expert of every given text. For measuring routing levers on validation texts in seconds, not a build each
 * (bench/quality/text-routing-probe.ts).
 * @module
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AppError, parseRecipe, type RouterRecipe } from '@twinserve/shared'
import { defaultFeature, loadInputs } from './pipeline/load-inputs.ts'
import type { Reporter } from './pipeline/progress.ts'
import { bagRawFrom, withBagIdf } from './pipeline/router-training.ts'
import { trackRoutingRows } from './pipeline/row-layouts.ts'
import { mergeToFile } from './pipeline/shared-merge.ts'
import { scratchFile } from './pipeline/variants.ts'
import { extractFeatures, featureRows } from './router/features.ts'
import { routerFeatureList, tokenRouterInputs } from './router/router-inputs.ts'
import type { RoutingExample } from './router/routing-data.ts'
import { trainRouter } from './router/train-router.ts'

export interface RouterProbeArm {
  label: string
  /** Recipe `router` fields to change (YAML spelling), applied over the recipe's own. */
  router: Record<string, unknown>
}

export interface RouterProbeResult {
  label: string
  featureSize: number
  /** On the routing data's held-out split (as the build reports it). */
  heldoutAccuracy: number
  /** Predicted expert of every given text, per group (the order given). */
  predictions: Int32Array[]
  /** The MLP router's logits of every given text, per group, [n, T] (absent for other kinds). */
  logits?: Float32Array[]
  seconds: number
}

/** A model's inputs for one example, as routing data gives them (e.g. a decoder prompt's prefill ids). */
export type ProbeInputs = Record<string, readonly number[]>

/**
 * @param texts groups of texts (e.g. one per task's validation split); each text is tokenized with the recipe's
 *   tokenizer and input rule, as the runner would; or groups of model inputs as they are (a recipe without a
 *   tokenizer, e.g. a decoder's prompts as prefill ids)
 */
export async function probeRouters(
  recipePath: string,
  arms: readonly RouterProbeArm[],
  texts: readonly (readonly string[])[] | readonly (readonly ProbeInputs[])[],
  reporter: Reporter,
): Promise<RouterProbeResult[]> {
  const staging = await mkdtemp(join(tmpdir(), 'twinserve-router-probe-'))
  try {
    const ctx = await loadInputs(recipePath, reporter, { staging, externalAbove: 2 ** 31 - 1 })
    const tokenizer = ctx.tokenizer?.tokenizer
    const encode = (t: string | ProbeInputs, name: string): ProbeInputs => {
      if (typeof t !== 'string') return t
      if (!tokenizer)
        throw new AppError(
          'INVALID_REQUEST',
          'the router probe reads texts: the recipe needs a tokenizer',
        )
      return tokenizer.encodeExample(t, name)
    }
    const shared = await mergeToFile(
      ctx,
      ctx.recipe.shared,
      'shared model',
      { rel: scratchFile('shared'), variant: 'shared' },
      false,
    )
    const groups: RoutingExample[][] = texts.map((g, i) =>
      (g as readonly (string | ProbeInputs)[]).map((t, j) => ({
        expert: 0,
        inputs: encode(t, `group ${i} text ${j}`) as RoutingExample['inputs'],
      })),
    )
    const tracked = await trackRoutingRows(shared.model, ctx.inputs, ctx.split.train, staging)
    const results: RouterProbeResult[] = []
    for (const arm of arms) {
      const t0 = performance.now()
      const recipe = parseRecipe(
        { ...(ctx.recipe as object), router: { ...ctx.recipe.router, ...arm.router } },
        `arm '${arm.label}'`,
      )
      const features = routerFeatureList(recipe, () => defaultFeature(ctx.base))
      const rows = features.map((f) => featureRows(f, tracked.layouts.get(f)))
      const tokens = withBagIdf(tokenRouterInputs(recipe, ctx.tokenizer?.json), ctx.split.train)
      const extract = (examples: readonly RoutingExample[]) =>
        extractFeatures(shared.model, features, ctx.inputs, examples, {
          layout: rows,
          tokens,
          dir: staging,
        })
      const train = await extract(ctx.split.train)
      const validation = await extract(ctx.split.validation)
      // The held-out split and the given texts in one pass: trainRouter predicts its `heldout` rows only.
      const asked = await extract([...ctx.split.heldout, ...groups.flat()])
      const nHeld = ctx.split.heldout.length
      const router: RouterRecipe = recipe.router
      const fitted = await trainRouter(
        router,
        { train, validation, heldout: asked },
        ctx.expertNames.length,
        bagRawFrom(train.d, tokens.bag),
      )
      let ok = 0
      for (let i = 0; i < nHeld; i++)
        if (fitted.heldoutPredictions[i] === ctx.split.heldout[i]?.expert) ok++
      const heldoutAccuracy = nHeld === 0 ? 0 : ok / nHeld
      const predictions: Int32Array[] = []
      const logits: Float32Array[] = []
      const T = ctx.expertNames.length
      let at = nHeld
      for (const g of groups) {
        predictions.push(fitted.heldoutPredictions.slice(at, at + g.length))
        if (fitted.heldoutLogits)
          logits.push(fitted.heldoutLogits.slice(at * T, (at + g.length) * T))
        at += g.length
      }
      results.push({
        label: arm.label,
        featureSize: train.d,
        heldoutAccuracy,
        predictions,
        ...(fitted.heldoutLogits ? { logits } : {}),
        seconds: (performance.now() - t0) / 1000,
      })
    }
    return results
  } finally {
    await rm(staging, { recursive: true, force: true })
  }
}
