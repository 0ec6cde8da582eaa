/**
 * Fast probe of the text twin's routing levers on the VALIDATION splits (test stays for the report), without a
 * package build per arm: the recipe's router alone (`probeRouters`: shared merge once, then per arm the router's
 * features, training on the routing data as the build does, and its pick for every validation text), scored
 * with every expert's own prediction on every validation text. Routed normalised accuracy here is HARD routing
 * (the router's argmax expert answers), an estimate of the served soft mix (a one-hot mix is exactly its expert;
 * a confident router is close to one-hot); the package build and `bench:quality` give the served number.
 *
 *   node --import tsx bench/quality/text-routing-probe.ts [--arms 0,13,14] [--confusion]
 * @module
 */
import { resolve } from 'node:path'
import { createReporter, probeRouters, type RouterProbeArm } from '@twinserve/gpu-runner/build'
import { loadTextSplit, readTextZoo } from '@twinserve/zoo/text'
import { loadTextSplits, zooTokenizer } from './text-evaluate.ts'
import { TEXT_FEATURES } from './text-levers.ts'
import { expertCorrect } from './text-router-mix.ts'

const RECIPE = 'zoo/text/recipe.yaml'
const F = TEXT_FEATURES

/** The three levers together (recipe router fields). */
const LEVERS = {
  pooling: 'masked',
  feature: [F.embeddings, F.block0Ffn],
  bag_of_tokens: true,
}

/** The router as first committed (block 0's FFN, plain mean, MLP [64], 40 epochs): what arms 0–11 change. */
const FIRST = {
  feature: F.block0Ffn,
  pooling: 'mean',
  bag_of_tokens: false,
  bag_weighting: 'mean',
  hidden: [64],
  epochs: 40,
  patience: 8,
  sharpness: 1,
}

/** The router before route2-13 (mean bag, MLP [256], 80 epochs): what arms 13 on change. */
const BEFORE = {
  ...LEVERS,
  bag_weighting: 'mean',
  hidden: [256],
  epochs: 80,
  patience: 12,
  sharpness: 1,
}

/** The arms; each changes the committed recipe's `router` block (arms 0–11 from FIRST, 13 on from BEFORE). */
const FIRST_ARMS: readonly RouterProbeArm[] = [
  { label: 'first recipe: [64] on block 0 FFN, mean', router: {} },
  { label: 'block 0 FFN, masked', router: { pooling: 'masked' } },
  {
    label: 'embeddings + block 0 FFN, masked',
    router: { pooling: 'masked', feature: [F.embeddings, F.block0Ffn] },
  },
  {
    label: 'embeddings + block 0 FFN, masked, bag of tokens',
    router: { pooling: 'masked', feature: [F.embeddings, F.block0Ffn], bag_of_tokens: true },
  },
  {
    label: 'embeddings + block 0 FFN, masked, bag, [256] 80 epochs',
    router: {
      pooling: 'masked',
      feature: [F.embeddings, F.block0Ffn],
      bag_of_tokens: true,
      hidden: [256],
      epochs: 80,
      patience: 12,
    },
  },
  {
    label: 'embeddings + block 0 FFN, masked, bag, linear',
    router: {
      pooling: 'masked',
      feature: [F.embeddings, F.block0Ffn],
      bag_of_tokens: true,
      hidden: [],
      epochs: 80,
      patience: 12,
    },
  },
  {
    label: 'embeddings + block 0 FFN + block 1, masked, bag, [256]',
    router: {
      pooling: 'masked',
      feature: [F.embeddings, F.block0Ffn, F.block1],
      bag_of_tokens: true,
      hidden: [256],
      epochs: 80,
      patience: 12,
    },
  },
  {
    label: 'embeddings + block 0 FFN, masked, bag, [64] 80 epochs',
    router: { ...LEVERS, hidden: [64], epochs: 80, patience: 12 },
  },
  {
    label: 'embeddings + block 0 FFN, masked, bag, [128] 80 epochs',
    router: { ...LEVERS, hidden: [128], epochs: 80, patience: 12 },
  },
  {
    label: 'embeddings + block 0 FFN, masked, bag, [256] 80 epochs, seed 2',
    router: { ...LEVERS, hidden: [256], epochs: 80, patience: 12, seed: 2 },
  },
  {
    label: 'embeddings + block 0 FFN, masked, bag, [128] 80 epochs, seed 2',
    router: { ...LEVERS, hidden: [128], epochs: 80, patience: 12, seed: 2 },
  },
  {
    label: 'embeddings + block 0 FFN, masked, bag, [128] 80 epochs, lr 0.001',
    router: { ...LEVERS, hidden: [128], epochs: 80, patience: 12, lr: 0.001 },
  },
]

const ROUTE2_ARMS: readonly RouterProbeArm[] = [
  // route2-13: the bag weighed by tf-idf (unit L2 norm, not standardised) and hashed token pairs.
  { label: 'committed recipe', router: {} },
  { label: 'bag tf-idf, [256]', router: { bag_weighting: 'tfidf' } },
  { label: 'bag tf-idf, linear', router: { bag_weighting: 'tfidf', hidden: [] } },
  { label: 'bag tf-idf, [64]', router: { bag_weighting: 'tfidf', hidden: [64] } },
  {
    label: 'bag tf-idf + pairs 4096, [256]',
    router: { bag_weighting: 'tfidf', bag_bigrams: 4096 },
  },
  {
    label: 'bag tf-idf + pairs 4096, linear',
    router: { bag_weighting: 'tfidf', bag_bigrams: 4096, hidden: [] },
  },
  { label: 'bag mean + pairs 4096, [256]', router: { bag_bigrams: 4096 } },
  { label: 'bag tf-idf, linear, seed 2', router: { bag_weighting: 'tfidf', hidden: [], seed: 2 } },
  {
    label: 'bag tf-idf + pairs 4096, linear, seed 2',
    router: { bag_weighting: 'tfidf', bag_bigrams: 4096, hidden: [], seed: 2 },
  },
  {
    label: 'bag tf-idf, linear, weight decay 0.1',
    router: { bag_weighting: 'tfidf', hidden: [], weight_decay: 0.1 },
  },
  {
    label: 'bag tf-idf + pairs 2048, linear',
    router: { bag_weighting: 'tfidf', bag_bigrams: 2048, hidden: [] },
  },
  {
    label: 'bag tf-idf, linear, embeddings only',
    router: { bag_weighting: 'tfidf', hidden: [], feature: F.embeddings },
  },
  {
    label: 'bag tf-idf, linear, lr 0.01',
    router: { bag_weighting: 'tfidf', hidden: [], lr: 0.01 },
  },
]

/**
 * text-bigram (2026-12-06): token pairs on the committed router (masked embeddings + tf-idf bag, linear, × 3), one
 * seed (`ensemble: 1`) per arm so that a 65,536-bucket arm trains in minutes: unchecked buckets of growing H
 * against checked ones (`bag_bigrams_checked`: each bucket holds its most frequent training pair, the others are
 * left out; bench/quality/text-bigram-probe.ts has the offline reason).
 */
const BIGRAM_ARMS: readonly RouterProbeArm[] = [
  { label: 'committed recipe, one seed', router: {} },
  { label: 'pairs 4096, unchecked', router: { bag_bigrams: 4096 } },
  { label: 'pairs 4093, checked', router: { bag_bigrams: 4093, bag_bigrams_checked: true } },
  { label: 'pairs 8191, checked', router: { bag_bigrams: 8191, bag_bigrams_checked: true } },
  { label: 'pairs 16384, unchecked', router: { bag_bigrams: 16384 } },
  { label: 'pairs 32768, unchecked', router: { bag_bigrams: 32768 } },
  { label: 'pairs 65536, unchecked', router: { bag_bigrams: 65536 } },
  { label: 'pairs 2039, checked', router: { bag_bigrams: 2039, bag_bigrams_checked: true } },
  { label: 'committed recipe, one seed, seed 2', router: { seed: 2 } },
  {
    label: 'pairs 4093, checked, seed 2',
    router: { bag_bigrams: 4093, bag_bigrams_checked: true, seed: 2 },
  },
  {
    label: 'pairs 8191, checked, seed 2',
    router: { bag_bigrams: 8191, bag_bigrams_checked: true, seed: 2 },
  },
  { label: 'pairs 16381, checked', router: { bag_bigrams: 16381, bag_bigrams_checked: true } },
]

export const PROBE_ARMS: readonly RouterProbeArm[] = [
  ...FIRST_ARMS.map((a) => ({ ...a, router: { ...FIRST, ...a.router } })),
  ...ROUTE2_ARMS.map((a, i) => (i === 0 ? a : { ...a, router: { ...BEFORE, ...a.router } })),
  ...BIGRAM_ARMS.map((a) => ({ ...a, router: { ensemble: 1, ...a.router } })),
]

async function main() {
  const args = process.argv.slice(2)
  const pick = args.includes('--arms') ? args[args.indexOf('--arms') + 1]?.split(',') : undefined
  const arms = pick ? PROBE_ARMS.filter((_a, i) => pick.includes(String(i))) : PROBE_ARMS
  const zoo = readTextZoo()
  const tasks = zoo.tasks.map((t) => t.name)
  const data = loadTextSplits(zoo, zooTokenizer(zoo), tasks, 'val')
  // correct[e][t][i]: does expert e answer validation text i of task t right (on task t's classes)?
  const correct = await expertCorrect(zoo, tasks, data)
  const sum = (a: Uint8Array) => a.reduce((x, y) => x + y, 0)
  const own = data.map((d, t) => sum(correct[t]?.[t] as Uint8Array) / d.n)
  const texts = data.map((d) => loadTextSplit(zoo, d.name, 'val').map((r) => r.text))
  const results = await probeRouters(resolve(RECIPE), arms, texts, createReporter())
  console.log(
    `validation, hard routing; expert accuracy on own task: ${own.map((a) => (a * 100).toFixed(1)).join(' / ')}`,
  )
  console.log(
    '| arm | d | router held-out % | router val % | routed normalised val % | per task normalised % |',
  )
  console.log('| --- | --: | --: | --: | --: | --- |')
  for (const r of results) {
    let routedOk = 0
    let n = 0
    const norm = data.map((d, t) => {
      const p = r.predictions[t] as Int32Array
      let ok = 0
      for (let i = 0; i < d.n; i++) {
        if (p[i] === t) routedOk++
        ok += correct[p[i] as number]?.[t]?.[i] ?? 0
      }
      n += d.n
      return ok / d.n / (own[t] as number)
    })
    const mean = norm.reduce((a, b) => a + b, 0) / norm.length
    console.log(
      `| ${r.label} | ${r.featureSize} | ${(r.heldoutAccuracy * 100).toFixed(1)} | ${((routedOk / n) * 100).toFixed(1)} | **${(mean * 100).toFixed(1)}** | ${norm.map((x) => (x * 100).toFixed(1)).join(' / ')} |`,
    )
    if (args.includes('--confusion')) {
      console.log(`  confusion (row: task, column: routed to) ${tasks.join(', ')}`)
      data.forEach((d, t) => {
        const row = new Array(tasks.length).fill(0)
        for (const e of r.predictions[t] as Int32Array) row[e]++
        console.log(`  ${d.name.padEnd(14)} ${row.map((c) => String(c).padStart(4)).join(' ')}`)
      })
    }
    console.log(`  (${r.seconds.toFixed(0)} s)`)
  }
}

await main()
