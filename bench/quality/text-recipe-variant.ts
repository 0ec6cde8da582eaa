/**
 * Writes a variant of the text recipe (zoo/text/recipe.yaml, paths made absolute) with a change applied, for
 * building a candidate package anywhere without touching the committed recipe: top-level keys replace, `router`
 * keys merge into the recipe's router (twin-arms.ts `applyChange`). Then `twinserve build <out.yaml> --out <dir>`
 * and `text-package-score.ts val <dir>`.
 *
 *   node --import tsx bench/quality/text-recipe-variant.ts <out.yaml> '<JSON change>' [recipe]
 *   e.g. '{"router": {"feature": "/Add_output_0", "ensemble": 3}}'
 * @module
 */
import { writeFile } from 'node:fs/promises'
import YAML from 'yaml'
import { applyChange, type RecipeChange, readRecipe } from './twin-arms.ts'

const [out, change = '{}', recipe = 'zoo/text/recipe.yaml'] = process.argv.slice(2)
if (!out) {
  process.stderr.write('usage: text-recipe-variant.ts <out.yaml> <JSON change> [recipe]\n')
  process.exit(2)
}
const r = applyChange(await readRecipe(recipe), JSON.parse(change) as RecipeChange)
await writeFile(out, YAML.stringify(r))
console.log(`${out}: ${change}`)
