#!/usr/bin/env bash
# Builds the breakerbox binary as it ships: static (CGO_ENABLED=0, so it runs
# in a distroless or scratch image and on any Linux), reproducible paths
# (-trimpath), stripped, with its version stamped. CI runs this script and the
# Dockerfile RUNs it: one build command for both.
#
#   .ci/build.sh [OUT]            default OUT: ./breakerbox
#   VERSION=v1.2.3 REVISION=abc .ci/build.sh /out/breakerbox
#
# VERSION and REVISION are optional: without them the binary reports the
# revision Go reads from the git checkout (or "unknown" outside one) and
# version "(devel)". GOOS and GOARCH cross-compile as usual.
set -euo pipefail
out=${1:-breakerbox}
case $out in /*) ;; *) out=$PWD/$out ;; esac
cd "$(dirname "$0")/../cmd/breakerbox"
ldflags="-s -w"
[ -n "${VERSION:-}" ] && ldflags+=" -X main.version=$VERSION"
[ -n "${REVISION:-}" ] && ldflags+=" -X main.revision=$REVISION"
# GOWORK=off: the module builds on its own go.mod (its replace lines point at
# the sibling modules), and Go stamps the VCS revision, which it does not in
# workspace mode.
GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out" .
