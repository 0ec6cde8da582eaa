-- API keys: only the SHA-256 of each bearer token is stored (the token is 256 random bits, so a plain hash is
-- not guessable and a fast one keeps the per-request lookup cheap). JSON arrays for scopes and models: they are
-- read whole with the key and never queried by element.
CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  key_hash TEXT NOT NULL UNIQUE,
  prefix TEXT NOT NULL,
  tenant TEXT NOT NULL,
  name TEXT,
  scopes TEXT NOT NULL,
  models TEXT NOT NULL,
  rate_limit_rps REAL,
  rate_limit_burst INTEGER,
  daily_quota INTEGER,
  created_at TEXT NOT NULL,
  revoked_at TEXT
);

CREATE INDEX api_keys_tenant ON api_keys (tenant, created_at);
