/**
 * Chart.js's browser bundle (UMD, defines the global `Chart`), as text: the dashboard page loads it from the
 * gateway itself, because a Worker's pages may not reach a CDN and the version must be the one package.json pins.
 * @see https://www.chartjs.org/docs/latest/getting-started/installation.html
 * @module
 */
import source from '../../../../node_modules/chart.js/dist/chart.umd.min.js'

export const CHART_JS_SOURCE: string = source
