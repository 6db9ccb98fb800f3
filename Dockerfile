# One image for both servers: `tgi-autoscaler adapter` and `tgi-autoscaler controller`.
#
# The install steps mirror scripts/setup.sh (a virtualenv with `pip install .`), which CI runs on
# every change, so what this file does is exercised even where no container engine is available.
# Pin the base by tag or digest at build time:
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest> -t tgi-autoscaler .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY tgi_autoscaler ./tgi_autoscaler
# A regular (non-editable) install: the final stage gets the venv and nothing of /src.
RUN /opt/venv/bin/python -m pip install --upgrade pip \
 && /opt/venv/bin/python -m pip install . \
 && /opt/venv/bin/tgi-autoscaler --version

FROM ${PYTHON_IMAGE}
# No compilers, no pip cache, no source tree: only the virtualenv.
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A fixed numeric UID/GID so `runAsNonRoot` can be verified by the kubelet.
RUN groupadd --system --gid 65532 tgi && useradd --system --uid 65532 --gid 65532 --no-create-home tgi
USER 65532:65532
# Adapter HTTPS (6443) and controller metrics/health (8080); probes come from the Kubernetes manifests.
EXPOSE 6443 8080
ENTRYPOINT ["tgi-autoscaler"]
CMD ["--help"]
