-- A key's generated-text budget (issue 14): prompt + completion tokens per minute on the generation routes;
-- NULL means no token limit.
ALTER TABLE api_keys ADD COLUMN tokens_per_minute INTEGER;
