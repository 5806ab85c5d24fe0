#!/usr/bin/env bash
# The one test command: installs what the tests need, then lints, type-checks and runs pytest.
#   bash scripts/test.sh            everything
#   bash scripts/test.sh -k rollout extra pytest arguments are passed through
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

# promtool and prometheus (alert-rule tests, monitoring end-to-end test): Debian package
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  echo "== installing the Debian prometheus package (promtool, prometheus)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # the package starts a system service; the tests start their own
  as_root systemctl stop prometheus 2>/dev/null || as_root service prometheus stop 2>/dev/null || true
fi

echo "== pip install -r requirements-dev.txt"
python -m pip install -q --disable-pip-version-check -r requirements-dev.txt

echo "== ruff"
python -m ruff check .
echo "== mypy components serving modelctl"
python -m mypy

echo "== workflow files (GitHub Actions schema)"
python -m check_jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

echo "== pytest"
python -m pytest -q -p no:cacheprovider "$@"
