#!/usr/bin/env node
// The package pull, TypeScript run directly like the runner itself (gpu-runner/bin/twinserve.mjs): register
// tsx's ESM loader, then hand over to pull-command.ts.
import { register } from 'tsx/esm/api'

register()
const { main } = await import('../pull-command.ts')
process.exitCode = await main()
