-- Versioned rollouts (issue 19, gateway/src/rollouts): per model, the stable package version, a canary version
-- with a sticky share of callers, the guardrails that roll the canary back by themselves, and why the state is
-- what it is. One row per model: setting a rollout replaces the previous one.
CREATE TABLE rollouts (
  model TEXT PRIMARY KEY,
  -- Salt of the sticky assignment and key of the outcomes; new whenever the stable or canary version changes,
  -- kept when only the percentage does (so units already on the canary stay there as it grows).
  id TEXT NOT NULL,
  stable TEXT NOT NULL,
  canary TEXT,
  canary_percent REAL NOT NULL,
  runner_group TEXT,
  -- {guardrails, alpha}
  config TEXT NOT NULL,
  state TEXT NOT NULL,
  reason TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);

-- One row per request served under a rollout, written in batches off the request path (as exposures are).
CREATE TABLE rollout_outcomes (
  rollout_id TEXT NOT NULL,
  arm TEXT NOT NULL,
  ts INTEGER NOT NULL,
  status INTEGER NOT NULL,
  latency_ms REAL NOT NULL
);

CREATE INDEX rollout_outcomes_arm_ts ON rollout_outcomes (rollout_id, arm, ts);
