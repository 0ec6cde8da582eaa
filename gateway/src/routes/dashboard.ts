import { Hono } from 'hono'
import type { AppEnv } from '../env.ts'
import { CHART_JS_SOURCE } from '../experiments/dashboard/chart-source.ts'
import { DASHBOARD_CLIENT_SOURCE } from '../experiments/dashboard/client-source.ts'
import {
  CHART_SCRIPT_PATH,
  DASHBOARD_CSP,
  DASHBOARD_HTML,
  DASHBOARD_SCRIPT_PATH,
} from '../experiments/dashboard/dashboard-page.ts'

const JS = 'text/javascript; charset=utf-8'

/**
 * The experiments dashboard: a static page and its scripts (Chart.js and ours), served by the gateway. They hold
 * no data; the page reads the admin API with an admin key (experiments/dashboard).
 */
export const dashboard = new Hono<AppEnv>()
  .get('/dashboard', (c) =>
    c.html(DASHBOARD_HTML, 200, {
      'content-security-policy': DASHBOARD_CSP,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'cache-control': 'no-store',
    }),
  )
  .get(CHART_SCRIPT_PATH, (c) =>
    c.body(CHART_JS_SOURCE, 200, {
      'content-type': JS,
      'x-content-type-options': 'nosniff',
      'cache-control': 'public, max-age=86400',
    }),
  )
  .get(DASHBOARD_SCRIPT_PATH, (c) =>
    c.body(DASHBOARD_CLIENT_SOURCE, 200, {
      'content-type': JS,
      'x-content-type-options': 'nosniff',
      'cache-control': 'no-cache',
    }),
  )
