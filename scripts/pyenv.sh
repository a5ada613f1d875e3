#!/usr/bin/env bash
# Prints the path of a Python interpreter with tests/py/requirements.txt
# installed (the providers' signing libraries the gateway tests use and
# confluent-kafka's AvroSerializer for the registry tests),
# creating the venv the first time. Cached by the requirements' hash under
# HERALD_PY_CACHE (default ~/.cache/herald/py). Progress goes to stderr.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REQ="$REPO_ROOT/tests/py/requirements.txt"
hash=$(sha256sum "$REQ" | cut -c1-12)
VENV="${HERALD_PY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/herald/py}/venv-$hash"
# One installer at a time (tests run in parallel).
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import stripe, standardwebhooks, svix, confluent_kafka.schema_registry.avro' 2>/dev/null; then
  echo "pyenv.sh: installing $(grep -v '^#' "$REQ" | tr '\n' ' ')into $VENV" >&2
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    SUDO=()
    [[ $(id -u) != 0 ]] && SUDO=(sudo -n)
    export DEBIAN_FRONTEND=noninteractive
    { ${SUDO[@]+"${SUDO[@]}"} apt-get update -qq &&
      ${SUDO[@]+"${SUDO[@]}"} apt-get install -y -qq --no-install-recommends python3-venv; } </dev/null >&2
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ" >&2
fi
echo "$VENV/bin/python"
