-- Generations (issue 14): a completion's id as the OpenAI routes answer it (`cmpl-…`, `chatcmpl-…`), so that
-- feedback can name the completion a client holds instead of the request's x-request-id. NULL for inference.
ALTER TABLE exposures ADD COLUMN completion_id TEXT;

CREATE INDEX exposures_completion ON exposures (tenant, completion_id) WHERE completion_id IS NOT NULL;
