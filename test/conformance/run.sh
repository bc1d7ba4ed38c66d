#!/usr/bin/env bash
# Istio config conformance as part of `make test`: runs the shared runner
# (../shared/istio-conformance/run: Istio's validation testdata, its webhook
# dataset, Bookinfo and the istio.io task YAML) against SKEIN (default
# bin/skein) and fails on any case Skein handles differently from Istio,
# unless allowlist.txt lists the case id with a reason.
#
# The data lives outside the repository. SKEIN_CONFORMANCE_DIR overrides
# where; otherwise ../shared/istio-conformance (from /work/main) or
# ../../shared/istio-conformance (from a worktree). Missing data skips the
# check, except in CI (CI=true), where it fails.
set -u
cd "$(dirname "$0")/../.."
skein=${1:-bin/skein}
dir=${SKEIN_CONFORMANCE_DIR:-}
if [ -z "$dir" ]; then
  for d in ../shared/istio-conformance ../../shared/istio-conformance; do
    if [ -x "$d/run" ]; then dir=$d; break; fi
  done
fi
if [ -z "$dir" ] || [ ! -x "$dir/run" ]; then
  if [ "${CI:-}" = true ]; then
    echo "conformance: ../shared/istio-conformance/run not found (CI=true: this is a failure)" >&2
    exit 1
  fi
  echo "conformance: ../shared/istio-conformance/run not found; skipped (set SKEIN_CONFORMANCE_DIR)" >&2
  exit 0
fi

allow=test/conformance/allowlist.txt
# Every entry is "<case id> <reason>"; an entry without a reason is an error.
bad=$(grep -v '^\s*\(#\|$\)' "$allow" | awk 'NF < 2')
if [ -n "$bad" ]; then
  echo "conformance: $allow entries need a reason:" >&2
  echo "$bad" >&2
  exit 1
fi

out=$("$dir/run" "$skein")
rc=$?
printf '%s\n' "$out" | grep -E '^(part |conformance: )'
# Mismatch lines look like "  [1a] <id> <Kind/name>: ...".
mismatches=$(printf '%s\n' "$out" | sed -n 's/^  \[[^]]*\] \([^ ]*\) .*/\1/p')
if [ $rc -ne 0 ] && [ -z "$mismatches" ]; then
  echo "conformance: the runner failed (exit $rc):" >&2
  printf '%s\n' "$out" | tail -20 >&2
  exit 1
fi
allowed=$(grep -v '^\s*\(#\|$\)' "$allow" | awk '{print $1}')
fail=0
for id in $mismatches; do
  if printf '%s\n' "$allowed" | grep -qxF -- "$id"; then
    echo "allowed: $id ($(grep -F -- "$id" "$allow" | head -1 | cut -d' ' -f2-))"
  else
    printf '%s\n' "$out" | grep -F -- "] $id " >&2
    fail=1
  fi
done
for id in $allowed; do
  if ! printf '%s\n' "$mismatches" | grep -qxF -- "$id"; then
    echo "conformance: $id is allow-listed but now matches Istio: remove it from $allow" >&2
    fail=1
  fi
done
if [ $fail -ne 0 ]; then
  echo "conformance: mismatches with Istio not in $allow (above)" >&2
fi
exit $fail
