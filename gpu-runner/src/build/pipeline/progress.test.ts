import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { bar, createReporter, isInteractive, markdownTable } from './progress.ts'

function sink(isTTY: boolean) {
  let text = ''
  const stream = Object.assign(
    new Writable({
      write(chunk, _enc, done) {
        text += String(chunk)
        done()
      },
    }),
    { isTTY },
  )
  return { stream, text: () => text }
}

describe('progress reporter', () => {
  it('draws bars only on an interactive terminal outside CI', () => {
    expect(isInteractive({ isTTY: true }, {})).toBe(true)
    expect(isInteractive({ isTTY: true }, { CI: 'true' })).toBe(false)
    expect(isInteractive({ isTTY: false }, {})).toBe(false)
    expect(bar(5, 10, 10)).toBe('[#####.....] 5/10')
  })

  it('interactive: redraws a bar in place and ends the step with a line', () => {
    const s = sink(true)
    const r = createReporter({ stream: s.stream, interactive: true })
    const step = r.step('merging', 4)
    step.tick(2)
    step.done('4 tensors')
    // Each redraw starts with carriage return + erase line (ESC [2K); compared as text to keep regexes plain.
    const redraws = s.text().split('\r\u001b[2K').filter(Boolean)
    expect(redraws[0]).toBe('merging [........................] 0/4')
    expect(redraws.at(-1)).toMatch(/^merging: done in \d+\.\d s \(4 tensors\)\n$/)
    expect(r.timings.map((t) => t.label)).toEqual(['merging'])
  })

  it('in CI or a pipe: one plain line per finished step; quiet: nothing at all', () => {
    const ci = sink(false)
    const r = createReporter({ stream: ci.stream })
    const step = r.step('router', 10)
    for (let i = 1; i <= 10; i++) step.tick(i)
    step.done()
    expect(ci.text()).toMatch(/^router: done in \d+\.\d s\n$/)
    const q = sink(true)
    const quiet = createReporter({ stream: q.stream, quiet: true })
    quiet.step('x', 2).done('y')
    expect(q.text()).toBe('')
    expect(quiet.timings).toHaveLength(1)
  })

  it('formats a Markdown table with padded columns', () => {
    expect(markdownTable(['a', 'bb'], [['ccc', 'd']])).toBe(
      '| a   | bb |\n| --- | -- |\n| ccc | d  |',
    )
  })
})
