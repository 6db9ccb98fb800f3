#!/usr/bin/env bash
# Installs everything the demo and the tests need on a fresh Debian machine:
# Debian's prometheus (with promtool) and nginx, a Python virtualenv with the project, and the Go-built
# Kubernetes binaries (cached under ~/.cache/tgi-autoscaler, so a second run takes seconds).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

debian_packages=()
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  debian_packages+=(prometheus)
fi
# The API-key proxy's integration test runs Debian's nginx with the rendered nginx.conf. nginx lives
# in /usr/sbin, which a normal user's PATH may lack. Where the package starts its own system service,
# the tests leave that one alone: they start their own nginx on a loopback port.
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  debian_packages+=(nginx)
fi
if [ "${#debian_packages[@]}" -gt 0 ]; then
  echo "==> installing Debian's packages: ${debian_packages[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${debian_packages[@]}" >/dev/null
fi

# Kubernetes v1.36 and etcd 3.6.16 declare go 1.26.0 in their go.mod (Debian bookworm's golang-go is 1.19).
if ! command -v go >/dev/null; then
  echo "error: Go >= 1.26 is required to build the local control plane (go not found on PATH)" >&2
  exit 1
fi
go_version=$(go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n' 1.26 "$go_version" | sort -V | head -n1)" != "1.26" ]; then
  echo "error: Go >= 1.26 is required to build the local control plane (found go$go_version)" >&2
  exit 1
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
echo "==> installing the project and its development tools into .venv"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
# The harness (tgi_autoscaler_dev: local stack, simulator, demo) is not part of the distribution;
# the checkout goes on the virtualenv's path so tests, benchmarks and the demo can import it.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
printf '%s\n' "$PWD" > "$site/tgi_autoscaler_dev.pth"

echo "==> building (or reusing) the local control plane binaries"
# KEDA's operator and metrics server only on request (TGI_AUTOSCALER_WITH_KEDA=1, set by
# `make test-keda`): their cold build alone is about 16 min of CPU.
build_args=()
if [ "${TGI_AUTOSCALER_WITH_KEDA:-0}" = "1" ]; then build_args+=(--with-keda); fi
.venv/bin/python -m tgi_autoscaler_dev --log-format console localstack build "${build_args[@]}"
