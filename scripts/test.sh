#!/usr/bin/env bash
# The full check: lint, type-check, layer contracts, then every test tier (unit, integration, e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

echo "==> ruff"
ruff check tgi_autoscaler tgi_autoscaler_dev tests bench
ruff format --check tgi_autoscaler tgi_autoscaler_dev tests bench
echo "==> mypy --strict"
mypy
echo "==> import-linter"
lint-imports
echo "==> the Dockerfile's install steps (non-editable install into a fresh virtualenv)"
imgvenv=$(mktemp -d)
trap 'rm -rf "$imgvenv"' EXIT
python -m venv "$imgvenv/venv"
"$imgvenv/venv/bin/python" -m pip install -q --upgrade pip
"$imgvenv/venv/bin/python" -m pip install -q .
"$imgvenv/venv/bin/tgi-autoscaler" --version
"$imgvenv/venv/bin/tgi-autoscaler" adapter --help >/dev/null
"$imgvenv/venv/bin/tgi-autoscaler" controller --help >/dev/null
# The image ships the runtime only: the harness (local stack, simulator, demo) is not installed.
if "$imgvenv/venv/bin/python" -I -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("tgi_autoscaler_dev") is None)'; then
  echo "the non-editable install contains the test harness (tgi_autoscaler_dev)" >&2
  exit 1
fi

echo "==> pytest"
set +e
python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: treating as a failure, a test run must run tests" >&2
  exit 1
fi
exit "$rc"
