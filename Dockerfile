# syntax=docker/dockerfile:1
# The LunaRoute ext_proc image: the Python gRPC server (`lunaroute serve`) and the Envoy bootstrap
# renderer (`lunaroute render-envoy`). Envoy itself runs from the official envoyproxy/envoy image.
#
#   docker build -t lunaroute-envoy:local .
#   docker run --rm -v $PWD/lunaroute.yaml:/etc/lunaroute/config.yaml:ro lunaroute-envoy:local serve
#   docker run --rm -v $PWD/lunaroute.yaml:/etc/lunaroute/config.yaml:ro lunaroute-envoy:local render-envoy
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LUNAROUTE_CONFIG=/etc/lunaroute/config.yaml

WORKDIR /src
COPY pyproject.toml README.md ./
COPY extproc ./extproc
COPY envoy ./envoy
RUN pip install . && rm -rf /src

# Non-root user. /envoy is where `render-envoy` writes the bootstrap when a volume is mounted there,
# /run/lunaroute where the workers put their Unix sockets (a fresh named volume takes the directory's
# owner, so uid 10001 may write to it).
RUN groupadd --gid 10001 lunaroute \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin lunaroute \
    && mkdir -p /etc/lunaroute /envoy /run/lunaroute \
    && chown 10001:10001 /envoy /run/lunaroute
WORKDIR /
USER 10001:10001

# gRPC ext_proc over TCP (the Helm chart's mesh mode, with mutual TLS): worker i listens on
# extproc.port + i. Beside Envoy (compose, the chart's gateway) the workers use Unix sockets instead.
EXPOSE 50051

ENTRYPOINT ["lunaroute"]
CMD ["serve"]
