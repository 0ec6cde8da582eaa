/** The single registry object every isolate shares (runner-registry.ts). */
export const REGISTRY_NAME = 'global'

export function registryStub(env: Env) {
  return env.RUNNER_REGISTRY.getByName(REGISTRY_NAME)
}
