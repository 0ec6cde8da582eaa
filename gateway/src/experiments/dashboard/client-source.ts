/**
 * The dashboard's browser script (dashboard.client.js, plain ES2020 for the browser), as text.
 * @module
 */
import source from './dashboard.client.js'

export const DASHBOARD_CLIENT_SOURCE: string = source
