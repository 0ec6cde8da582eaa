-- A/B experiments on merge strategies (gateway/src/experiments). JSON columns hold what is read whole with its
-- row and never queried by element (configs, the bucket allocation, an arm's merge controls).
CREATE TABLE experiments (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  model TEXT NOT NULL,
  unit TEXT NOT NULL,
  mode TEXT NOT NULL,
  status TEXT NOT NULL,
  salt TEXT NOT NULL,
  -- {guardrails, statistics, bandit, prediction_output}
  config TEXT NOT NULL,
  -- [[start, end, arm position], ...] over the 10,000 buckets (fixed mode; thompson mode keeps its own in the
  -- experiment's bandit Durable Object, seeded from this one)
  allocation TEXT NOT NULL,
  created_at TEXT NOT NULL,
  started_at TEXT,
  stopped_at TEXT,
  stop_reason TEXT
);

-- One running experiment per model: the gateway never has to choose between two.
CREATE UNIQUE INDEX experiments_one_running ON experiments (model) WHERE status = 'running';
CREATE INDEX experiments_created ON experiments (created_at, id);

CREATE TABLE experiment_arms (
  experiment_id TEXT NOT NULL REFERENCES experiments (id),
  -- Order of creation; the allocation names arms by it, so arms are only ever appended.
  position INTEGER NOT NULL,
  name TEXT NOT NULL,
  weight REAL NOT NULL,
  is_control INTEGER NOT NULL,
  parameters TEXT NOT NULL,
  description TEXT,
  status TEXT NOT NULL DEFAULT 'active',
  stop_reason TEXT,
  stopped_at TEXT,
  PRIMARY KEY (experiment_id, name),
  UNIQUE (experiment_id, position)
);

-- One row per exposure (a request served by an arm), written in batches off the request path; feedback fills
-- reward. Keyed by the caller's tenant and the request id, so feedback can only reach its own tenant's requests.
CREATE TABLE exposures (
  tenant TEXT NOT NULL,
  request_id TEXT NOT NULL,
  experiment_id TEXT NOT NULL,
  arm TEXT NOT NULL,
  unit_id TEXT NOT NULL,
  key_id TEXT NOT NULL,
  model TEXT NOT NULL,
  -- Pinned by an admin's x-twinserve-arm: recorded, but not random, so left out of the statistics.
  pinned INTEGER NOT NULL DEFAULT 0,
  ts INTEGER NOT NULL,
  latency_ms REAL NOT NULL,
  status INTEGER NOT NULL,
  runner_id TEXT,
  -- JSON array of the predicted label of each row (argmax of the prediction output), for label feedback.
  prediction TEXT,
  reward REAL,
  feedback_ts INTEGER,
  PRIMARY KEY (tenant, request_id)
);

CREATE INDEX exposures_arm_ts ON exposures (experiment_id, arm, ts);
CREATE INDEX exposures_arm_latency ON exposures (experiment_id, arm, latency_ms);
CREATE INDEX exposures_feedback ON exposures (experiment_id, feedback_ts) WHERE reward IS NOT NULL;
