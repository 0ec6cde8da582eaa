/**
 * The static merges the twin package is compared with, each with its usual hyperparameters and lambda chosen
 * on the zoo's validation split (carved from the training data), never on test:
 * - `linear`: the plain average of the experts (no lambda; mergekit's default, normalize=true);
 * - `task_arithmetic`: θ₀ + λ·Σ τ_t (Twin-Merging and FusionBench default λ=0.3);
 * - `ties`: trim to the top 20% of |τ_t| (the TIES paper's k=20), sign election, disjoint mean (normalize=true);
 * - `dare_ties`: DARE drop with keep probability 0.3 (Twin-Merging's p=0.7), rescale, then TIES' sign election;
 * - `consensus`: TALL-mask consensus, λ_t = 0.6 and k = 2 (the paper's defaults), on top of task arithmetic.
 * @see https://arxiv.org/abs/2212.04089 (task arithmetic) · https://arxiv.org/abs/2306.01708 (TIES) ·
 *   https://arxiv.org/abs/2311.03099 (DARE) · https://arxiv.org/abs/2405.07813 (TALL masks / consensus)
 * @module
 */
import { type MergeSpecInput, parseMergeSpec } from '@twinserve/shared'
import { type Accuracy, evaluate, mean, openCpu, type Session, type TaskData } from './evaluate.ts'
import { graphBytes, mergeValues, type ZooModels } from './zoo-models.ts'

export interface StaticMethod {
  label: string
  /** The spec without lambda; `lambda` is searched unless `fixed`. */
  spec: MergeSpecInput
  fixed?: boolean
}

export const STATIC_METHODS: readonly StaticMethod[] = [
  { label: 'linear (average)', spec: { method: 'linear' }, fixed: true },
  { label: 'task_arithmetic', spec: { method: 'task_arithmetic' } },
  { label: 'ties (density 0.2)', spec: { method: 'ties', density: 0.2 } },
  { label: 'dare_ties (density 0.3)', spec: { method: 'dare_ties', density: 0.3, seed: 0 } },
  { label: 'consensus (λ_t 0.6, k 2)', spec: { method: 'consensus', tall_mask_lambda: 0.6, k: 2 } },
]

/** The lambda grid searched on validation: around 0.3 (task arithmetic's default) up to 1 (normalised methods). */
export const LAMBDA_GRID: readonly number[] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1, 1.2, 1.5]

export interface StaticResult<A extends Accuracy = Accuracy> {
  method: StaticMethod
  /**
   * The validation objective per lambda of the grid (one entry for fixed methods): mean accuracy by default, and
   * the evaluator's whole result (a caller may pick lambda again under another objective from it).
   */
  validation: { lambda: number | undefined; mean: number; accuracy: A }[]
  lambda: number | undefined
  test: A
}

function specWith(m: StaticMethod, lambda: number | undefined) {
  return parseMergeSpec(lambda === undefined ? m.spec : { ...m.spec, lambda })
}

/** Scores one plain graph on one split (the Fashion-MNIST zoo's pixels, the text zoo's tokens, the LM zoo's perplexity). */
export type Evaluator<D, A extends Accuracy = Accuracy> = (session: Session, data: D) => Promise<A>

/** What λ maximises on validation, from an evaluator's per-task scores (default: their mean, higher is better). */
export type Objective = (perTask: readonly number[]) => number

/** One static merge (method `m` at `lambda`) scored on one split. */
export async function staticMergeAccuracy<D, A extends Accuracy = Accuracy>(
  z: ZooModels,
  m: StaticMethod,
  lambda: number | undefined,
  data: D,
  score: Evaluator<D, A>,
): Promise<A> {
  const session = await openCpu(graphBytes(z, mergeValues(z, specWith(m, lambda))))
  try {
    return await score(session, data)
  } finally {
    await session.release()
  }
}

/**
 * Picks lambda by the validation objective (default: mean accuracy; ties: the smaller lambda), then measures that
 * merge on test. `score` evaluates a plain graph on a split (default: the Fashion-MNIST zoo's); `objective` turns
 * its per-task scores into one number to maximise (perplexity, lower-is-better, passes a normalised one).
 */
export async function runStaticMerge<D = readonly TaskData[], A extends Accuracy = Accuracy>(
  z: ZooModels,
  m: StaticMethod,
  data: { val: D; test: D },
  score: Evaluator<D, A> = evaluate as unknown as Evaluator<D, A>,
  objective: Objective = mean,
): Promise<StaticResult<A>> {
  const grid = m.fixed ? [undefined] : LAMBDA_GRID
  const validation: StaticResult<A>['validation'] = []
  for (const lambda of grid) {
    const accuracy = await staticMergeAccuracy(z, m, lambda, data.val, score)
    validation.push({ lambda, mean: objective(accuracy.perTask), accuracy })
  }
  const best = validation.reduce((a, b) => (b.mean > a.mean ? b : a))
  return {
    method: m,
    validation,
    lambda: best.lambda,
    test: await staticMergeAccuracy(z, m, best.lambda, data.test, score),
  }
}
