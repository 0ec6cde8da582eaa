/**
 * The `twinserve` command line: a small dispatcher. Each subcommand is one entry in `COMMANDS`, loaded lazily so
 * that `twinserve build` does not pay for the server's imports and vice versa.
 *
 *   twinserve build <recipe.yaml> --out <dir> [--force] [--quiet]
 *   twinserve serve --package <dir> [--package <dir> …] [--port 8790] [--provider auto|cuda|cpu] …
 *   twinserve help
 * @module
 */

/** A subcommand: takes its own arguments (after the subcommand name), returns the process exit code. */
export interface Command {
  summary: string
  load: () => Promise<{ run: (args: string[]) => Promise<number> }>
}

export const COMMANDS: Record<string, Command> = {
  build: {
    summary: 'build a twin package from a base ONNX model, fine-tuned experts and a recipe',
    load: () => import('./build/build-command.ts'),
  },
  serve: {
    summary: 'serve twin packages over the Open Inference Protocol (V2 REST)',
    load: () => import('./server/serve-command.ts'),
  },
}

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length))
  const lines = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(width)}  ${c.summary}`)
  return `usage: twinserve <command> [options]\n\ncommands:\n${lines.join('\n')}\n\n'twinserve <command> --help' shows a command's options.\n`
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    process.stdout.write(usage())
    return name === undefined ? 2 : 0
  }
  const command = COMMANDS[name]
  if (!command) {
    process.stderr.write(`twinserve: unknown command '${name}'\n\n${usage()}`)
    return 2
  }
  const mod = await command.load()
  return mod.run(rest)
}
