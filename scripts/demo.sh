#!/usr/bin/env bash
# The local demo of the whole loop: control plane, Prometheus, simulated TGI pods, adapter, controller, HPA.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m tgi_autoscaler_dev --log-format console demo "$@"
