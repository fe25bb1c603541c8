# syntax=docker/dockerfile:1.7
# One image for the three services and the `d06` command; each Deployment picks its command:
#   ingest     uvicorn --factory services.ingest.app:create_app    --port 8001
#   aggregate  uvicorn --factory services.aggregate.app:create_app --port 8002
#   query      uvicorn --factory services.query.app:create_app     --port 8003
#   migration  d06 migrate (+ d06 hierarchy load, d06 catalog load)
# It runs as uid 10001 on a read-only root filesystem: nothing is written but /tmp (an emptyDir).
# Pin the base by digest in CI (python:3.11-slim-bookworm@sha256:...) so a rebuild is the same image.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# Every dependency ships manylinux wheels for CPython 3.11, so no compiler is needed here.
RUN python -m venv /opt/d06
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
# Not editable: the runtime stage gets the installed package (catalogue, migrations and demo data included),
# compiled to .pyc now because the running container cannot write __pycache__.
RUN /opt/d06/bin/pip install --no-compile . \
    && /opt/d06/bin/python -m compileall -q -j 0 /opt/d06/lib \
    && /opt/d06/bin/d06 --help > /dev/null

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="d06" \
      org.opencontainers.image.description="Project 06 indicators: ingest, aggregate and query services" \
      org.opencontainers.image.source="https://d06.gov.vn/source"
ENV PATH=/opt/d06/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp
RUN groupadd --system --gid 10001 d06 \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin d06
COPY --from=build /opt/d06 /opt/d06
COPY deploy/tools/wait_for_schema.py /opt/d06/tools/wait_for_schema.py
WORKDIR /opt/d06
USER 10001:10001
EXPOSE 8001 8002 8003
CMD ["d06", "--help"]
