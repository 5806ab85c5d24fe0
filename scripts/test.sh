#!/usr/bin/env bash
# The one test command: installs what the tests need, then lints, type-checks and runs pytest
# (the program's tests, checkov over the rendered manifests, the policy pack's tests).
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

# Tools whose pins clash with the program's get a venv each, built once and rebuilt when their
# requirements change:
#   policy/venv    the CrossGuard pack and its tests (pulumi-policy pins protobuf 5; the Google
#                  SDKs need 6). The same venv `pulumi preview --policy-pack policy` uses.
#   .venv-checkov  checkov (beside the program it would downgrade boto3/botocore and packaging).
tool_venv() {  # tool_venv DIR REQUIREMENTS [FILES THE STAMP ALSO COVERS...]
  local dir=$1 req=$2 stamp
  stamp=$(cat "${@:2}" | sha256sum | cut -d' ' -f1)
  if [ ! -x "$dir/bin/python" ] || [ "$(cat "$dir/.requirements-sha256" 2>/dev/null)" != "$stamp" ]; then
    echo "== venv $dir (pip install -r $req)"
    python -m venv --clear "$dir"
    "$dir/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
    echo "$stamp" > "$dir/.requirements-sha256"
  fi
}
tool_venv policy/venv policy/requirements-dev.txt policy/requirements.txt
tool_venv .venv-checkov scripts/checkov-requirements.txt
export CHECKOV="$PWD/.venv-checkov/bin/checkov"
export MLFLOW_DEPLOY_REQUIRE_TOOLS=1   # a missing tool fails its tests instead of skipping them

echo "== ruff"
python -m ruff check .
echo "== mypy components serving modelctl policy"
python -m mypy

echo "== workflow files (GitHub Actions schema)"
python -m check_jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

echo "== pytest"
# One worker per core (xdist), each test file whole on one worker (--dist loadfile): a file's
# module-scoped servers, Prometheus and renders are started once, as in a plain run. Tests pick
# free ports and use per-test temp dirs, so the workers do not meet. Arguments come after, so
# `bash scripts/test.sh -n 0` runs in one process (pdb, -x); PYTEST_XDIST_AUTO_NUM_WORKERS=N
# sets the worker count (default: the logical CPUs).
python -m pytest -q -p no:cacheprovider -n logical --dist loadfile "$@"

# The policy pack's tests run in its venv; the stacks they check are rendered by this (the
# program's) Python: policy/tests/render_cases.py via MLFLOW_DEPLOY_PYTHON.
echo "== policy pack tests (policy/venv)"
MLFLOW_DEPLOY_PYTHON="$(command -v python)" policy/venv/bin/python -m pytest -q -p no:cacheprovider policy/tests
