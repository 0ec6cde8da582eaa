import { Hono } from 'hono'
import type { AppEnv } from '../env.ts'

/** Open Inference Protocol health: 200 with `{live:true}` while the Worker is up. */
export const health = new Hono<AppEnv>().get('/v2/health/live', (c) => c.json({ live: true }))
