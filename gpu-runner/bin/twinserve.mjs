#!/usr/bin/env node
// The `twinserve` command. The runner is TypeScript run directly (no build step), so this entry registers tsx's
// ESM loader and hands over to src/cli.ts.
import { register } from 'tsx/esm/api'

register()
const { main } = await import('../src/cli.ts')
process.exitCode = await main(process.argv.slice(2))
