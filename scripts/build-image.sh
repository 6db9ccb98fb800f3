#!/usr/bin/env bash
# Builds the tgi-autoscaler image from the Dockerfile without a Docker engine or an image registry:
#
#   1. the base image is made from Debian's packages: mmdebstrap writes a minimal Debian bookworm
#      root filesystem with python3 (the Python the image runs), imported with buildah as
#      localhost/tgi-autoscaler-base:bookworm (skipped when that image exists);
#   2. buildah builds the Dockerfile on that base (--build-arg PYTHON_IMAGE=...), with the host's
#      network for pip (PyPI only) and the host's CA bundle and pip.conf mounted into the RUN steps
#      only, so a TLS-intercepting proxy trusted by the host is trusted by pip too; nothing of the
#      host is committed into the image.
#
# Needs root (buildah's storage in /var/lib/containers), and installs Debian's buildah, podman,
# runc and mmdebstrap if missing. Prints the image's size. bench/image_bench.py runs the image
# against the local control plane. Usage: scripts/build-image.sh [IMAGE]
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n1)
image=${1:-localhost/tgi-autoscaler:$version}
base=${BASE_IMAGE:-localhost/tgi-autoscaler-base:bookworm}
suite=bookworm

if [ "$(id -u)" -ne 0 ]; then
  echo "error: run as root (buildah and mmdebstrap write system container storage)" >&2
  exit 1
fi
missing=()
for tool in buildah podman runc mmdebstrap; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing Debian's ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    buildah podman runc mmdebstrap uidmap >/dev/null
fi

# The OCI runtime and resource limits the RUN steps (and bench/image_bench.py) use. runc, not crun:
# Debian's crun 1.8 refuses a cgroup v1/v2 hybrid host with any controller on the v2 hierarchy
# ("cgroups in hybrid mode not supported"), even with cgroups disabled. The limits are the host's
# own: the engines' defaults for root (1048576 open files and processes) fail with EPERM where the
# host's hard limits are lower and cannot be raised, as in some VMs and containers.
runtime=${OCI_RUNTIME:-runc}
command -v "$runtime" >/dev/null || { apt-get install -y -qq --no-install-recommends "$runtime" >/dev/null; }
# (buildah's own default of 32768 processes is kept where the host allows it.)
nproc=$(ulimit -Hu); if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
limits=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit "nproc=$nproc:$nproc")

started=$(date +%s)
if ! buildah inspect --type image "$base" >/dev/null 2>&1; then
  echo "==> base image $base from Debian $suite packages (mmdebstrap)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # minbase: essential packages plus apt; python3-venv for the Dockerfile's virtualenv, passwd for
  # its useradd, python-is-python3 for its `python`. Documentation and locales are left out.
  mmdebstrap --quiet --variant=minbase \
    --include=python3,python3-venv,python-is-python3,ca-certificates,passwd \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    "$suite" "$work/rootfs.tar"
  ctr=$(buildah from scratch)
  buildah add --quiet "$ctr" "$work/rootfs.tar" /
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/bash --label org.opencontainers.image.base.name="debian:$suite (mmdebstrap)" "$ctr"
  buildah commit --quiet --rm "$ctr" "$base" >/dev/null
  echo "    base built in $(( $(date +%s) - started ))s"
fi

mounts=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
if [ -f /etc/pip.conf ]; then mounts+=(--volume /etc/pip.conf:/etc/pip.conf:ro); fi
echo "==> $image from the Dockerfile (buildah bud on $base)"
build_started=$(date +%s)
buildah bud --quiet --network host --pull=never --runtime "$runtime" "${limits[@]}" "${mounts[@]}" \
  --build-arg PYTHON_IMAGE="$base" --tag "$image" --file Dockerfile . >/dev/null
echo "    built in $(( $(date +%s) - build_started ))s (total $(( $(date +%s) - started ))s)"
size=$(podman image inspect --format '{{.Size}}' "$image")
base_size=$(podman image inspect --format '{{.Size}}' "$base")
echo "==> $image: $(( size / 1000000 )) MB ($(( base_size / 1000000 )) MB of it the Debian base)"
