# syntax=docker/dockerfile:1
# breakerbox's image: the static binary on distroless, run as a non-root user.
#
#   docker build -t breakerbox --build-arg VERSION=v1.2.3 --build-arg REVISION=$(git rev-parse HEAD) .
#   docker run --rm -p 7070:7070 -p 7071:7071 breakerbox
#
# Without a config file it runs on the embedded default (ADR-002's and T10's
# services); mount one and pass `serve --config /etc/breakerbox/breakerbox.yaml`.

# The build stage runs the same script as CI (.ci/build.sh): CGO_ENABLED=0,
# -trimpath, stripped, version stamped.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY . .
ARG VERSION=""
ARG REVISION=""
RUN --mount=type=cache,target=/root/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    VERSION="$VERSION" REVISION="$REVISION" bash .ci/build.sh /out/breakerbox \
 && /out/breakerbox version

# distroless/static: CA certificates (for https:// upstreams and rediss://),
# /etc/passwd with the nonroot user (65532), tzdata; no shell, no package
# manager. The binary needs nothing else.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/breakerbox /usr/local/bin/breakerbox
# Inside a container, loopback is the container's own: listen on every
# interface so -p publishes the ports. A config file's listen/admin are
# overridden by these; set them to empty (-e BREAKERBOX_LISTEN=) to use the
# file's. As a Kubernetes sidecar, keep the proxy on 127.0.0.1 (see
# deploy/kubernetes/).
ENV BREAKERBOX_LISTEN=0.0.0.0:7070 \
    BREAKERBOX_ADMIN=0.0.0.0:7071
EXPOSE 7070 7071
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/breakerbox"]
CMD ["serve"]
