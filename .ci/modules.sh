#!/usr/bin/env bash
# Prints each module of the workspace with its go line and its direct
# requirements, one module a line. .ci/run compares this with .ci/modules.txt,
# so that a new dependency, or a raised go line, is a deliberate, reviewed
# change of that file, never a side effect.
set -euo pipefail
cd "$(dirname "$0")/.."
for dir in $(go list -m -f '{{.Dir}}'); do
  (cd "$dir" && GOWORK=off go mod edit -json) | python3 -c '
import json, sys
m = json.load(sys.stdin)
deps = sorted(r["Path"] for r in (m.get("Require") or []) if not r.get("Indirect"))
print(m["Module"]["Path"], "go" + m["Go"], *deps)'
done | sort
