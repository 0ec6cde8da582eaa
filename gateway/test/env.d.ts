import type { D1Migration } from 'cloudflare:test'

// The bindings come from wrangler.toml (worker-configuration.d.ts, generated); the tests add their migrations.
declare global {
  namespace Cloudflare {
    interface Env {
      TEST_MIGRATIONS: D1Migration[]
    }
  }
}
