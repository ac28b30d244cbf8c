#!/usr/bin/env bash
# Installs the pinned local emulator into the repo's .local/emu (gitignored): moto's server
# (EC2, SSM, S3, Step Functions with its ASL interpreter), boto3 for the harness, pytest and
# pytest-xdist (one local stack per worker) for the end-to-end tests. Idempotent.
set -euo pipefail

MOTO_VERSION=5.2.1
BOTO3_VERSION=1.43.11
PYTEST_VERSION=8.3.4
PYTEST_XDIST_VERSION=3.8.0
EXECNET_VERSION=2.1.2

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.local/emu"
python_bin="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv"
    "$python_bin" -m venv "$venv"
fi
installed() { "$venv/bin/python" -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }
if [ "$(installed moto)" != "$MOTO_VERSION" ] || [ "$(installed boto3)" != "$BOTO3_VERSION" ] \
    || [ "$(installed pytest)" != "$PYTEST_VERSION" ] || [ "$(installed pytest-xdist)" != "$PYTEST_XDIST_VERSION" ]; then
    echo "installing moto[server] $MOTO_VERSION, boto3 $BOTO3_VERSION, pytest $PYTEST_VERSION, pytest-xdist $PYTEST_XDIST_VERSION into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "moto[server]==$MOTO_VERSION" "boto3==$BOTO3_VERSION" "pytest==$PYTEST_VERSION" \
        "pytest-xdist==$PYTEST_XDIST_VERSION" "execnet==$EXECNET_VERSION"
fi
echo "moto        $(installed moto)"
