# One image for every SYT Queue service: `sytq api`, `sytq worker`, `sytq controller`.
# Build: docker build -t syt-queue:dev .     (needs Docker; see hack/kind-up.sh)
# BASE_IMAGE: any Debian-based image with python3.11 and pip as `python`/`pip` on PATH; the test
# suite builds with a local stand-in (hack/image/build-base.sh) because it cannot pull from Docker Hub.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# --- build stage: wheels for the app and its dependencies ---------------------------------
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
# Dependencies first, in a layer of their own that a code change does not invalidate: wheel the
# project with empty package dirs, keep only the dependencies' wheels.
RUN mkdir sytq sytq_cli api worker controller \
 && pip wheel --wheel-dir /wheels . \
 && rm -rf /wheels/syt_queue-*.whl build *.egg-info sytq sytq_cli api worker controller
COPY sytq ./sytq
COPY sytq_cli ./sytq_cli
COPY api ./api
COPY worker ./worker
COPY controller ./controller
RUN pip wheel --no-deps --wheel-dir /wheels .

# --- runtime stage: no compilers, no source tree, non-root --------------------------------
FROM ${BASE_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SYTQ_DATA_DIR=/tmp/sytq
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links=/wheels syt-queue \
 && rm -rf /wheels \
 && groupadd --system --gid 10001 sytq \
 && useradd --system --uid 10001 --gid sytq --home-dir /nonexistent --shell /usr/sbin/nologin sytq
USER 10001:10001
EXPOSE 8080 9090
ENTRYPOINT ["sytq"]
CMD ["api"]
