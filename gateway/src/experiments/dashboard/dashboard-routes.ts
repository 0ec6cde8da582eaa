/**
 * The experiments dashboard, mounted at DASHBOARD_PATH: a static page and its scripts (Chart.js and ours). They
 * hold no data, so they are public; the page reads the admin API with an admin key the user gives it.
 * @module
 */
import { Hono } from 'hono'
import type { AppEnv } from '../../app-env.ts'
import { guard } from '../../guard.ts'
import { CHART_JS_SOURCE } from './chart-source.ts'
import { DASHBOARD_CLIENT_SOURCE } from './client-source.ts'
import { CHART_SCRIPT, DASHBOARD_CSP, DASHBOARD_HTML, DASHBOARD_SCRIPT } from './dashboard-page.ts'

const JS = 'text/javascript; charset=utf-8'

export const dashboard = new Hono<AppEnv>()
  .get('/', guard({ access: 'public' }), (c) =>
    c.html(DASHBOARD_HTML, 200, {
      'content-security-policy': DASHBOARD_CSP,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'cache-control': 'no-store',
    }),
  )
  .get(`/${CHART_SCRIPT}`, guard({ access: 'public' }), (c) =>
    c.body(CHART_JS_SOURCE, 200, {
      'content-type': JS,
      'x-content-type-options': 'nosniff',
      'cache-control': 'public, max-age=86400',
    }),
  )
  .get(`/${DASHBOARD_SCRIPT}`, guard({ access: 'public' }), (c) =>
    c.body(DASHBOARD_CLIENT_SOURCE, 200, {
      'content-type': JS,
      'x-content-type-options': 'nosniff',
      'cache-control': 'no-cache',
    }),
  )
