/**
 * How separable the text zoo's tasks are at all, whatever the twin graph can compute: a strong offline classifier
 * (multinomial logistic regression on sparse tf-idf n-grams, sublinear counts, L2-normalised rows, Adagrad with L2)
 * trained on ALL the routing data (the zoo's: 2,000 texts per task; or the file given, e.g. every train text from
 * `zoo/text/tooling/text_data.py 4000 <out>`) and scored on the VALIDATION splits, with the routed
 * normalised accuracy its hard routing would give (each validation text answered by the expert it picks), and
 * the router accuracy the 97 % normalised needs at this classifier's cost per misrouted text.
 * Feature sets: the tokenizer's pieces under the input rule (the first 62, what the twin's router sees), the
 * pieces of the whole text (≤ 400 characters), and lower-cased word uni+bigrams of the raw text.
 *
 *   node --import tsx bench/quality/text-routing-ceiling.ts [routing.jsonl]
 * @module
 */
import { readFileSync } from 'node:fs'
import { TextTokenizer } from '@twinserve/gpu-runner/text'
import { loadTextSplit, readTextZoo, textRoutingPath, textZooPath } from '@twinserve/zoo/text'
import { loadTextSplits, zooTokenizer } from './text-evaluate.ts'
import { expertCorrect } from './text-router-mix.ts'
import { fitIdf, tfidf, trainLr } from './text-sparse-lr.ts'

const HASH = 1 << 20

function hashKey(s: string): number {
  let h = 2166136261
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619)
  return (h >>> 0) % HASH
}

/** Uni + bigram keys of a token sequence (hashed). */
function ngrams(tokens: readonly (string | number)[], bigrams: boolean): number[] {
  const keys = tokens.map((t) => hashKey(`u${t}`))
  if (bigrams)
    for (let i = 0; i + 1 < tokens.length; i++) keys.push(hashKey(`b${tokens[i]}_${tokens[i + 1]}`))
  return keys
}

async function main() {
  const zoo = readTextZoo()
  const tasks = zoo.tasks.map((t) => t.name)
  const routing = readFileSync(process.argv[2] ?? textRoutingPath(zoo), 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as { expert: string; inputs: { text: string } })
  const trainTexts = routing.map((r) => r.inputs.text)
  const trainY = Int32Array.from(routing, (r) => tasks.indexOf(r.expert))
  const valTexts = tasks.map((t) => loadTextSplit(zoo, t, 'val').map((r) => r.text))
  const data = loadTextSplits(zoo, zooTokenizer(zoo), tasks, 'val')
  // correct[e][t][i]: does expert e answer validation text i of task t right?
  const correct = await expertCorrect(zoo, tasks, data)
  const own = data.map(
    (d, t) => (correct[t]?.[t] ?? new Uint8Array()).reduce((a, b) => a + b, 0) / d.n,
  )

  const t = zoo.tokenizer
  const tokenizerOf = (maxLength: number) =>
    TextTokenizer.fromJson(
      readFileSync(textZooPath(zoo, t.file)),
      readFileSync(textZooPath(zoo, t.config)),
      { maxLength, padId: t.pad_id, truncation: true, idsInput: 'ids', maskInput: 'mask' },
      'text zoo',
    )
  const pieces64 = tokenizerOf(t.max_length)
  const piecesAll = tokenizerOf(1024)
  const words = (s: string) => s.toLowerCase().match(/[a-z0-9']+|[^\sa-z0-9']/g) ?? []
  const sets: { label: string; keys: (s: string, bigrams: boolean) => number[] }[] = [
    {
      label: 'pieces, first 62 (router input)',
      keys: (s, bi) => ngrams(pieces64.encode(s, ''), bi),
    },
    { label: 'pieces, whole text', keys: (s, bi) => ngrams(piecesAll.encode(s, ''), bi) },
    { label: 'words, whole text', keys: (s, bi) => ngrams(words(s), bi) },
  ]
  console.log(
    `validation; experts on own task: ${own.map((a) => (a * 100).toFixed(1)).join(' / ')}`,
  )
  console.log(
    '| features | n-grams | router val % | routed normalised val % | per task | loss per misrouted text (points of normalised %) | router val % needed for 97 % |',
  )
  console.log('| --- | --- | --: | --: | --- | --: | --: |')
  for (const set of sets)
    for (const bigrams of [false, true]) {
      const t0 = performance.now()
      const trainKeys = trainTexts.map((s) => set.keys(s, bigrams))
      const idf = fitIdf(trainKeys, HASH)
      const predict = trainLr(tfidf(trainKeys, idf), trainY, tasks.length, HASH, 8, 1e-6)
      let ok = 0
      let n = 0
      let missed = 0
      const norm = valTexts.map((texts, task) => {
        const x = tfidf(
          texts.map((s) => set.keys(s, bigrams)),
          idf,
        )
        let right = 0
        x.forEach((s, i) => {
          const p = predict(s)
          if (p === task) ok++
          else missed++
          right += correct[p]?.[task]?.[i] ?? 0
        })
        n += texts.length
        return right / texts.length / (own[task] as number)
      })
      const mean = (norm.reduce((a, b) => a + b, 0) / norm.length) * 100
      const acc = (ok / n) * 100
      // Normalised % lost per misrouted text, as if the misrouted texts were spread like these: linear in the
      // misrouted share, so 97 % needs (100 − 97) / lossPerMiss misrouted percent.
      const lossPerMiss = (100 - mean) / ((missed / n) * 100)
      console.log(
        `| ${set.label} | ${bigrams ? 'uni + bi' : 'uni'} | ${acc.toFixed(1)} | **${mean.toFixed(1)}** | ${norm.map((x) => (x * 100).toFixed(1)).join(' / ')} | ${lossPerMiss.toFixed(2)} | ${(100 - 3 / lossPerMiss).toFixed(1)} |`,
      )
      console.log(`  (${((performance.now() - t0) / 1000).toFixed(0)} s)`)
    }
}

await main()
