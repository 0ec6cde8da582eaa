#!/bin/sh
# The runner image's entrypoint: pull the twin packages named in PACKAGE_SOURCES (verified against their
# manifests' sha256 before use), add them to RUNNER_PACKAGES (which may already list mounted packages), then
# replace this shell with the runner so that it receives SIGTERM directly and drains.
# Arguments are passed to `twinserve serve` (flags win over the environment).
set -eu

app_dir=$(CDPATH='' cd -- "$(dirname -- "$0")/../.." && pwd)

if [ -n "${PACKAGE_SOURCES:-}" ]; then
  pulled=$(node "$app_dir/infra/runner-image/bin/pull-packages.mjs")
  RUNNER_PACKAGES="${RUNNER_PACKAGES:+$RUNNER_PACKAGES,}$pulled"
  export RUNNER_PACKAGES
fi

exec node "$app_dir/gpu-runner/bin/twinserve.mjs" serve "$@"
