import 'vitest'

declare module 'vitest' {
  export interface ProvidedContext {
    /** Control API of the runner stand-ins (gateway/test/node/global-setup.ts). */
    standInControlUrl: string
  }
}
