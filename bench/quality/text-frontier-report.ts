/**
 * The markdown of the text frontier's RESULTS.md section (`bench:quality:text-frontier`): what was measured, the
 * headline against issue #18's goals (≥ 97% normalised at ≤ 25% of the experts' bytes; the data-free router within
 * 3 points of the trained one), where the bytes go, and the table (text-frontier.ts).
 * @module
 */
import { mb, pct } from './report.ts'
import {
  runTextFrontier,
  type TextFrontierOptions,
  type TextFrontierRow,
  TRAINED_BESIDE_DATA_FREE,
  textFrontierTable,
} from './text-frontier.ts'

const GOAL = { share: 0.25, normalised: 0.97, dataFreeGap: 0.03 }

/** The best row by validation routed accuracy among those that pass `keep`. */
function bestOf(
  rows: readonly TextFrontierRow[],
  keep: (r: TextFrontierRow) => boolean,
  by: 'routedVal' | 'oracleVal' = 'routedVal',
): TextFrontierRow | undefined {
  return rows
    .filter(keep)
    .reduce<TextFrontierRow | undefined>((a, r) => (!a || r[by] > a[by] ? r : a), undefined)
}

const parts = (r: TextFrontierRow) =>
  `shared ${mb(r.bytesOf.shared)}, factors ${mb(r.bytesOf.factors)}, router ${mb(r.bytesOf.router)} MB`

export async function textFrontierSection(o: TextFrontierOptions): Promise<string> {
  const { rows, expertBytes, expert, packageRouter } = await runTextFrontier(o)
  const share = (r: TextFrontierRow) => r.packageBytes / expertBytes
  const inBudget = (r: TextFrontierRow) => share(r) <= GOAL.share
  const best = bestOf(rows, (r) => r.group === 'routed' && inBudget(r))
  const bestAny = bestOf(rows, (r) => r.group === 'routed')
  const dataFree = bestOf(rows, (r) => r.label.includes('data-free'))
  // The trained router of the data-free arm's shared model and factors (the same bytes but the router's).
  const trained = rows.find((r) => r.label === TRAINED_BESIDE_DATA_FREE)
  const factorsBest = bestOf(rows, (r) => r.group === 'factors' && inBudget(r), 'oracleVal')
  const out: string[] = []
  out.push('## Quality–cost frontier on the text zoo (issue #18)')
  out.push('')
  out.push(
    '- **What:** one package per configuration, each a variant of `zoo/text/recipe.yaml` written by the bench (the committed recipe and package are not touched): no static variants, no shared file, so a package is the twin graph (shared model + factors + router) + the tokenizer (0.20 MB) + the manifest. ' +
      `Bytes are the package's files against the six experts' files (${mb(expertBytes)} MB), as in the Fashion frontier; 25% = ${mb(GOAL.share * expertBytes)} MB. ` +
      '"budget b" is `exclusive: { budget: b }` (the exclusive knowledge\'s bytes as a fraction of the experts\'), `int8`/`float16` its `exclusive.dtype`; ' +
      '"shared f16" is the recipe\'s `shared_dtype: float16` (the shared weights rounded to float16 before the exclusive knowledge is taken against them, stored as FLOAT16 behind a Cast); ' +
      '"router … f16" is `router.dtype: float16` (its weight matrices, the bag of tokens\' 5,000-row table included, stored as FLOAT16). ' +
      '"route1 router" rows keep the router the recipe had when this frontier was first measured (masked embeddings + block 0\'s FFN, a bag of tokens as mean counts standardised per id, MLP; pinned in text-frontier.ts, so their cached rows stay valid); ' +
      `"package router" rows use the committed recipe's router as it is (${packageRouter}).`,
  )
  out.push(
    `- **Accuracy:** normalised = twin / expert per task, averaged (experts measured the same way, validation ${expert.val.map((a) => pct(a)).join(' / ')}, test ${expert.test.map((a) => pct(a)).join(' / ')}). ` +
      '"oracle" feeds the true task one-hot (the factors\' loss alone), "routed" the embedded router\'s dense mix as served (factors and routing). ' +
      'Every choice is on **validation**; test is reported. The first rows (prototype router) sweep the factors; the rest are servable configurations. ' +
      "Pareto (✓, bold): no other row has both higher validation routed accuracy and fewer bytes. The data-free router reads block 0's FFN activation (the input of its second FFN matrix), mean-pooled, or the head's input (the mask-pooled final hidden state); no routing data.",
  )
  const cold = rows.reduce((a, r) => a + r.seconds, 0)
  out.push(
    `- **Time:** ${rows.filter((r) => r.built).length} of ${rows.length} arms built in this run, the others read from \`bench/.cache/text-frontier/\` (keyed by the recipe built and the zoo's files; \`--fresh\` rebuilds all). ` +
      `Building and measuring every arm took ${cold.toFixed(0)} s in all when each was made, on a machine other jobs may share: an upper bound.`,
  )
  out.push('')
  const verdict = best
    ? best.routedTest >= GOAL.normalised && best.routedVal >= GOAL.normalised
      ? '**goal met**'
      : `**goal not met** (${pct(GOAL.normalised - best.routedTest)} points short on test)`
    : '**no routed configuration fits**'
  out.push(
    `**Headline:** within 25% of the experts' bytes, the best routed configuration (validation) is ${best ? `${best.label}: **${pct(best.routedTest)}% normalised on test** (${pct(best.routedVal)}% validation, router ${pct(best.routerTest)}%) in ${mb(best.packageBytes)} MB = ${pct(share(best))}% of the experts (${parts(best)})` : 'none'}: ${verdict}. ` +
      (factorsBest
        ? `The factors are not what is missing: with the true task one-hot, ${factorsBest.label} keeps ${pct(factorsBest.oracleTest)}% on test (${pct(factorsBest.oracleVal)}% validation) at ${pct(share(factorsBest))}%; the gap is the router's. `
        : '') +
      (bestAny && bestAny !== best
        ? `The best routed row at any size: ${bestAny.label}, ${pct(bestAny.routedTest)}% test at ${pct(share(bestAny))}% (${parts(bestAny)}). `
        : '') +
      (dataFree && trained
        ? `The data-free router (best of its arms on validation: ${dataFree.label.replace(/.*data-free router/, 'data-free router')}) reaches ${pct(dataFree.routedTest)}% normalised on test (router ${pct(dataFree.routerTest)}%), ${pct(trained.routedTest - dataFree.routedTest)} points below the trained router of the same shared/factor configuration (${trained.label}, ${pct(trained.routedTest)}%): ${trained.routedTest - dataFree.routedTest <= GOAL.dataFreeGap ? 'within' : '**not** within'} the issue's 3 points.`
        : ''),
  )
  out.push('')
  out.push(textFrontierTable(rows, expertBytes))
  out.push('')
  return out.join('\n')
}
