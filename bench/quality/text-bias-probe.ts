/**
 * What a per-expert bias on the text twin's router logits would do (issue #13's "calibrated bias" lever), without a
 * rebuild: the package's router weights w on every text (one routed pass), then softmax(log w + b) given as the
 * explicit mix (which is exactly what a router with b added after its sharpened logits would serve). b is fitted
 * on the VALIDATION splits only, by coordinate ascent on hard routing (argmax of log w + b; each expert's own
 * answers on every validation text, as text-routing-probe.ts scores), with b of the first expert fixed at 0; then
 * the served soft mix is measured with and without b on validation and, to report, on test.
 *
 *   node --import tsx bench/quality/text-bias-probe.ts [package folder, default zoo/text/package]
 * @module
 */
import { join } from 'node:path'
import { readTextZoo } from '@twinserve/zoo/text'
import { openCpu } from './evaluate.ts'
import { loadTextSplits, zooTokenizer } from './text-evaluate.ts'
import { biased, expertCorrect, routerWeights, served } from './text-router-mix.ts'

const zoo = readTextZoo()
const tasks = zoo.tasks.map((t) => t.name)
const T = tasks.length
const tokenizer = zooTokenizer(zoo)
const data = {
  val: loadTextSplits(zoo, tokenizer, tasks, 'val'),
  test: loadTextSplits(zoo, tokenizer, tasks, 'test'),
}
const twin = await openCpu(join(process.argv[2] ?? 'zoo/text/package', 'model.onnx'))

const wVal = await routerWeights(twin, T, data.val)
const wTest = await routerWeights(twin, T, data.test)
const correct = await expertCorrect(zoo, tasks, data.val)
const own = data.val.map(
  (d, t) => ((correct[t] as Uint8Array[])[t] as Uint8Array).reduce((a, x) => a + x, 0) / d.n,
)
/** Hard routing (argmax of log w + b) normalised on validation: the objective b is fitted on. */
function hard(b: readonly number[]): number {
  let total = 0
  for (const [t, d] of data.val.entries()) {
    const w = wVal[t] as Float32Array
    let ok = 0
    for (let i = 0; i < d.n; i++) {
      let best = 0
      let bv = -Infinity
      for (let e = 0; e < T; e++) {
        const v = Math.log(Math.max(w[i * T + e] as number, 1e-30)) + (b[e] as number)
        if (v > bv) {
          bv = v
          best = e
        }
      }
      ok += correct[best]?.[t]?.[i] ?? 0
    }
    total += ok / d.n / (own[t] as number)
  }
  return total / T
}
const b = new Array(T).fill(0)
let best = hard(b)
console.log(`hard routing on validation, no bias: ${(best * 100).toFixed(2)} %`)
for (let sweep = 0; sweep < 3; sweep++)
  for (let e = 1; e < T; e++)
    for (let v = -2; v <= 2.0001; v += 0.1) {
      const trial = b.slice()
      trial[e] = Math.round(v * 10) / 10
      const score = hard(trial)
      if (score > best + 1e-9) {
        best = score
        b[e] = trial[e]
      }
    }
console.log(
  `fitted b (${tasks.join(', ')}): ${b.join(', ')}; hard routing on validation ${(best * 100).toFixed(2)} %`,
)
const zero = new Array(T).fill(0)
console.log(
  `served val, no bias:   ${await served(
    twin,
    zoo,
    data.val,
    wVal.map((w) => biased(w, zero)),
    'val',
  )}`,
)
console.log(
  `served val, fitted b:  ${await served(
    twin,
    zoo,
    data.val,
    wVal.map((w) => biased(w, b)),
    'val',
  )}`,
)
console.log(
  `served test, no bias:  ${await served(
    twin,
    zoo,
    data.test,
    wTest.map((w) => biased(w, zero)),
    'test',
  )}`,
)
console.log(
  `served test, fitted b: ${await served(
    twin,
    zoo,
    data.test,
    wTest.map((w) => biased(w, b)),
    'test',
  )}`,
)
