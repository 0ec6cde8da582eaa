/**
 * Why the served router's hashed token pairs (recipe `router.bag_bigrams: H`, bucket (a · vocab + b) mod H) do not
 * give what exact pairs give offline (text-routing-ceiling.ts, "pieces, first 62, uni + bi"). On the zoo's routing
 * data, tokenized under the input rule (what the router's bag counts: [CLS] + the first 62 pieces + [SEP]):
 * 1. collisions: distinct pairs against buckets, for the served hash and for a random hash into as many buckets;
 * 2. the offline classifier (text-sparse-lr.ts: tf-idf, sublinear counts, unit norm; logistic regression, Adagrad)
 *    on exact ids + pairs keyed as the served graph keys them, per H, against exact pairs and ids alone, scored on
 *    the VALIDATION splits: router accuracy and the routed normalised accuracy of hard routing.
 *
 *   node --import tsx bench/quality/text-bigram-probe.ts [routing.jsonl] [H,H,…] [k,k,…] [table H,H,…]
 * @module
 */
import { readFileSync } from 'node:fs'
import { loadTextSplit, readTextZoo, textRoutingPath } from '@twinserve/zoo/text'
import { loadTextSplits, zooTokenizer } from './text-evaluate.ts'
import { expertCorrect } from './text-router-mix.ts'
import { fitIdf, tfidf, trainLr } from './text-sparse-lr.ts'

/** A fixed pseudo-random bucket per pair (splitmix-style mixing of the pair id): what an ideal hash would do. */
function mixed(pair: number, h: number): number {
  let x = Math.imul(pair ^ (pair >>> 16), 0x45d9f3b)
  x = Math.imul(x ^ (x >>> 16), 0x45d9f3b)
  return ((x ^ (x >>> 16)) >>> 0) % h
}

async function main() {
  const zoo = readTextZoo()
  const tasks = zoo.tasks.map((t) => t.name)
  const sizes = (process.argv[3] ?? '4096,16384,32768,65536,16381,65521').split(',').map(Number)
  const vocabMins = (process.argv[4] ?? '2,3,5,10,20').split(',').map(Number)
  const tableSizes = (process.argv[5] ?? '4093,8191,16381').split(',').map(Number)
  const routing = readFileSync(process.argv[2] ?? textRoutingPath(zoo), 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as { expert: string; inputs: { text: string } })
  const tok = zooTokenizer(zoo)
  const vocab = 5000
  const encode = (s: string) => tok.encode(s, 'routing text')
  const trainIds = routing.map((r) => encode(r.inputs.text))
  const trainY = Int32Array.from(routing, (r) => tasks.indexOf(r.expert))
  const valIds = tasks.map((t) => loadTextSplit(zoo, t, 'val').map((r) => encode(r.text)))
  const pairsOf = (ids: readonly number[]) =>
    ids.slice(0, -1).map((a, i) => a * vocab + (ids[i + 1] as number))

  // 1. Collisions.
  const pairCount = new Map<number, number>()
  for (const ids of trainIds)
    for (const p of pairsOf(ids)) pairCount.set(p, (pairCount.get(p) ?? 0) + 1)
  const occurrences = [...pairCount.values()].reduce((a, b) => a + b, 0)
  const atLeast = (k: number) => [...pairCount.values()].filter((c) => c >= k).length
  console.log(
    `routing data: ${routing.length} texts, ${occurrences} pair occurrences, ${pairCount.size} distinct pairs (≥ 2: ${atLeast(2)}, ≥ 3: ${atLeast(3)}, ≥ 5: ${atLeast(5)}, ≥ 10: ${atLeast(10)})`,
  )
  console.log(
    '| H | hash | buckets used | distinct pairs sharing a bucket % | pair occurrences in a shared bucket % | pairs seen ≥ 3 sharing with another ≥ 3 % |',
  )
  console.log('| --: | --- | --: | --: | --: | --: |')
  for (const h of sizes)
    for (const [name, bucket] of [
      ['served', (p: number) => p % h],
      ['random', (p: number) => mixed(p, h)],
    ] as const) {
      const load = new Map<number, number>()
      const loadFrequent = new Map<number, number>()
      for (const [p, c] of pairCount) {
        const b = bucket(p)
        load.set(b, (load.get(b) ?? 0) + 1)
        if (c >= 3) loadFrequent.set(b, (loadFrequent.get(b) ?? 0) + 1)
      }
      let shared = 0
      let sharedOcc = 0
      let frequentShared = 0
      for (const [p, c] of pairCount) {
        const b = bucket(p)
        if ((load.get(b) as number) > 1) {
          shared++
          sharedOcc += c
        }
        if (c >= 3 && (loadFrequent.get(b) as number) > 1) frequentShared++
      }
      console.log(
        `| ${h} | ${name} | ${load.size} | ${((shared / pairCount.size) * 100).toFixed(1)} | ${((sharedOcc / occurrences) * 100).toFixed(1)} | ${((frequentShared / atLeast(3)) * 100).toFixed(1)} |`,
      )
    }

  // 2. The offline classifier per key space.
  const data = loadTextSplits(zoo, tok, tasks, 'val')
  const correct = await expertCorrect(zoo, tasks, data)
  const own = data.map(
    (d, t) => (correct[t]?.[t] ?? new Uint8Array()).reduce((a, b) => a + b, 0) / d.n,
  )
  // Exact pairs get dense keys in order of first sight (val pairs unseen in training get none: idf of a
  // never-seen key is irrelevant, its weight is 0).
  const exactKey = new Map<number, number>()
  for (const p of pairCount.keys()) exactKey.set(p, vocab + exactKey.size)
  const arms: { label: string; width: number; keys: (ids: readonly number[]) => number[] }[] = [
    { label: 'ids only', width: vocab, keys: (ids) => [...ids] },
    {
      label: `ids + exact pairs (${pairCount.size})`,
      width: vocab + pairCount.size,
      keys: (ids) => [
        ...ids,
        ...pairsOf(ids)
          .map((p) => exactKey.get(p))
          .filter((k) => k !== undefined),
      ],
    },
    // A pair vocabulary: only pairs seen ≥ k times in the routing data, each its own column; the rest dropped.
    ...vocabMins.map((k) => {
      const kept = new Map<number, number>()
      for (const [p, c] of pairCount) if (c >= k) kept.set(p, vocab + kept.size)
      return {
        label: `ids + pairs seen ≥ ${k} (${kept.size}), exact`,
        width: vocab + kept.size,
        keys: (ids: readonly number[]) => [
          ...ids,
          ...pairsOf(ids)
            .map((p) => kept.get(p))
            .filter((c) => c !== undefined),
        ],
      }
    }),
    // The same vocabulary in a table of H buckets (bucket p mod H, the pair checked against the bucket's own):
    // where kept pairs share a bucket the most frequent keeps it, the others are dropped.
    ...vocabMins.flatMap((k) =>
      tableSizes.map((h) => {
        const owner = new Map<number, number>()
        for (const [p, c] of pairCount)
          if (c >= k) {
            const b = p % h
            const o = owner.get(b)
            if (o === undefined || (pairCount.get(o) as number) < c) owner.set(b, p)
          }
        return {
          label: `ids + pairs seen ≥ ${k} in ${h} checked buckets (${owner.size} kept)`,
          width: vocab + h,
          keys: (ids: readonly number[]) => [
            ...ids,
            ...pairsOf(ids)
              .filter((p) => owner.get(p % h) === p)
              .map((p) => vocab + (p % h)),
          ],
        }
      }),
    ),
    ...sizes.flatMap((h) => [
      {
        label: `ids + pairs, served hash mod ${h}`,
        width: vocab + h,
        keys: (ids: readonly number[]) => [...ids, ...pairsOf(ids).map((p) => vocab + (p % h))],
      },
      {
        label: `ids + pairs, random hash into ${h}`,
        width: vocab + h,
        keys: (ids: readonly number[]) => [...ids, ...pairsOf(ids).map((p) => vocab + mixed(p, h))],
      },
    ]),
  ]
  console.log(
    `\nvalidation, hard routing; experts on own task: ${own.map((a) => (a * 100).toFixed(1)).join(' / ')}`,
  )
  console.log('| keys | width | router val % | routed normalised val % | per task |')
  console.log('| --- | --: | --: | --: | --- |')
  for (const arm of arms) {
    const trainKeys = trainIds.map(arm.keys)
    const idf = fitIdf(trainKeys, arm.width)
    const predict = trainLr(tfidf(trainKeys, idf), trainY, tasks.length, arm.width, 8, 1e-6)
    let ok = 0
    let n = 0
    const norm = valIds.map((texts, task) => {
      let right = 0
      tfidf(texts.map(arm.keys), idf).forEach((s, i) => {
        const p = predict(s)
        if (p === task) ok++
        right += correct[p]?.[task]?.[i] ?? 0
      })
      n += texts.length
      return right / texts.length / (own[task] as number)
    })
    const mean = (norm.reduce((a, b) => a + b, 0) / norm.length) * 100
    console.log(
      `| ${arm.label} | ${arm.width} | ${((ok / n) * 100).toFixed(1)} | **${mean.toFixed(1)}** | ${norm.map((x) => (x * 100).toFixed(1)).join(' / ')} |`,
    )
  }
}

await main()
