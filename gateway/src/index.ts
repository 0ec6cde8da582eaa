/**
 * The Twinserve gateway Worker.
 * @module
 */
import { app } from './app.ts'

export default app
