// The page functions passed to evaluate() run in the browser: they are typed with the DOM library.
/// <reference lib="dom" />
/**
 * Opens the gateway's experiments dashboard in headless Chromium (Debian's package, driven by playwright-core)
 * and reads back what a person would see: the arm table as rendered, and, from a screenshot, how many pixels of
 * each arm's colour every chart drew. Shared by the dashboard e2e test and bench/ab-demo.ts.
 * @module
 */
import { chromium } from 'playwright-core'

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
/** Root on a closed network: no sandbox, and nothing that phones home (its connections would be refused). */
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

/** The dashboard's palette (dashboard.client.js): arm i is drawn in PALETTE[i]. */
export const ARM_COLORS = ['#2563eb', '#dc2626', '#16a34a', '#d97706']

export const CHART_IDS = ['chart-reward', 'chart-pvalue', 'chart-traffic', 'chart-latency'] as const

export interface DashboardView {
  /** Arm table, one record per row: column name (data-col) → text. */
  rows: Record<string, string>[]
  verdicts: string[]
  /** Rollout table (issue #19), one record per model: column name (data-col) → text, plus `model`. */
  rollouts: Record<string, string>[]
  title: string
  /** The per-expert routing panel: per model [model, routed rows, mean entropy, abstained, drift] and per expert
   * [model, expert, traffic share, mean weight, rows > 0.1], as the cells' text. */
  routing: { models: string[][]; experts: string[][] }
  /** chart id → pixels within a small distance of each arm colour, in the screenshot. */
  colorPixels: Record<string, number[]>
  screenshot: Buffer
  /** Browser console errors and failed requests while the page ran. */
  problems: string[]
}

export async function viewDashboard(opts: {
  gatewayUrl: string
  adminKey: string
  arms: number
  timeoutMs?: number
}): Promise<DashboardView> {
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS })
  try {
    const page = await browser.newPage({
      viewport: { width: 1280, height: 1100 },
      deviceScaleFactor: 1,
    })
    const problems: string[] = []
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`)
    })
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`))
    page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`))
    // The key travels in the fragment: never sent to the server, dropped from the URL by the page.
    await page.goto(`${opts.gatewayUrl}/dashboard#key=${encodeURIComponent(opts.adminKey)}`)
    await page.waitForSelector('body[data-ready="true"]', { timeout: opts.timeoutMs ?? 20_000 })
    await page.waitForSelector('#arms tbody tr')
    // The charts draw synchronously (animation off); one frame for the canvas to reach the compositor.
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r(undefined))))
    if (page.url().includes('key=')) problems.push('the admin key stayed in the URL')

    const rows = await page.$$eval('#arms tbody tr', (trs) =>
      trs.map((tr) => {
        const out: Record<string, string> = { arm: (tr as HTMLElement).dataset.arm ?? '' }
        for (const td of Array.from(tr.querySelectorAll('td[data-col]')))
          out[(td as HTMLElement).dataset.col ?? ''] = td.textContent ?? ''
        return out
      }),
    )
    const cells = (sel: string) =>
      page.$$eval(sel, (trs) =>
        trs.map((tr) => Array.from(tr.querySelectorAll('td')).map((td) => td.textContent ?? '')),
      )
    const routing = {
      models: await cells('#routing-models tbody tr'),
      experts: await cells('#routing-experts tbody tr'),
    }
    const verdicts = await page.$$eval('#verdicts li', (lis) => lis.map((l) => l.textContent ?? ''))
    const rollouts = await page.$$eval('#rollouts tbody tr', (trs) =>
      trs.map((tr) => {
        const out: Record<string, string> = { model: (tr as HTMLElement).dataset.model ?? '' }
        for (const td of Array.from(tr.querySelectorAll('td[data-col]')))
          out[(td as HTMLElement).dataset.col ?? ''] = td.textContent ?? ''
        return out
      }),
    )
    const title = (await page.textContent('#title')) ?? ''
    const boxes: Record<string, { x: number; y: number; width: number; height: number }> = {}
    for (const id of CHART_IDS) {
      const box = await page.locator(`#${id}`).boundingBox()
      if (box) boxes[id] = box
    }
    const screenshot = await page.screenshot({ fullPage: true })

    // Count arm-coloured pixels per chart in the screenshot itself, decoded by the browser on a blank page.
    const probe = await browser.newPage()
    const colorPixels = await probe.evaluate(
      async ({ png, boxes, colors }) => {
        const img = new Image()
        img.src = `data:image/png;base64,${png}`
        await img.decode()
        const canvas = document.createElement('canvas')
        canvas.width = img.width
        canvas.height = img.height
        const ctx = canvas.getContext('2d')
        if (!ctx) throw new Error('no 2d context')
        ctx.drawImage(img, 0, 0)
        const rgb = colors.map((c) => {
          const n = Number.parseInt(c.slice(1), 16)
          return [(n >> 16) & 255, (n >> 8) & 255, n & 255]
        })
        const out: Record<string, number[]> = {}
        for (const [id, b] of Object.entries(boxes)) {
          const data = ctx.getImageData(
            Math.round(b.x),
            Math.round(b.y),
            Math.round(b.width),
            Math.round(b.height),
          ).data
          const counts = rgb.map(() => 0)
          for (let i = 0; i < data.length; i += 4)
            rgb.forEach(([r, g, bl], k) => {
              const d =
                Math.abs((data[i] ?? 0) - (r ?? 0)) +
                Math.abs((data[i + 1] ?? 0) - (g ?? 0)) +
                Math.abs((data[i + 2] ?? 0) - (bl ?? 0))
              if (d <= 24) counts[k] = (counts[k] ?? 0) + 1
            })
          out[id] = counts
        }
        return out
      },
      { png: screenshot.toString('base64'), boxes, colors: ARM_COLORS.slice(0, opts.arms) },
    )
    return { rows, verdicts, rollouts, title, routing, colorPixels, screenshot, problems }
  } finally {
    await browser.close()
  }
}
