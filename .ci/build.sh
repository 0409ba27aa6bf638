#!/usr/bin/env bash
# Builds the breakerbox binary as it ships: static (CGO_ENABLED=0, so it runs
# in a distroless or scratch image and on any Linux), reproducible paths
# (-trimpath), stripped, with its version stamped. CI runs this script and the
# Dockerfile RUNs it: one build command for both.
#
#   .ci/build.sh [OUT]            default OUT: ./breakerbox
#   VERSION=v1.2.3 REVISION=abc .ci/build.sh /out/breakerbox
#
# VERSION and REVISION are optional: without them the binary reports
# version "(devel)" and the git checkout's HEAD ("unknown" outside one). GOOS
# and GOARCH cross-compile as usual.
set -euo pipefail
out=${1:-breakerbox}
case $out in /*) ;; *) out=$PWD/$out ;; esac
cd "$(dirname "$0")/../cmd/breakerbox"
# Go stamps the revision itself only in a plain clone, not in a git worktree.
REVISION=${REVISION:-$(git rev-parse HEAD 2>/dev/null || true)}
ldflags="-s -w"
[ -n "${VERSION:-}" ] && ldflags+=" -X main.version=$VERSION"
[ -n "${REVISION:-}" ] && ldflags+=" -X main.revision=$REVISION"
# GOWORK=off: the module builds on its own go.mod (its replace lines point at
# the sibling modules), and Go stamps the VCS revision, which it does not in
# workspace mode (whether the checkout has uncommitted changes).
GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out" .
