import { Hono } from 'hono'
import type { AppEnv } from './env.ts'
import { health } from './routes/health.ts'

export const app = new Hono<AppEnv>().route('/', health)
