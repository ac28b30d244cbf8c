#!/usr/bin/env bash
# Installs the pinned lint tools into the repo's .local/ (gitignored). Idempotent: a tool
# already at its pinned version is left alone.
#
#   .local/venv        Python venv: cfn-lint, aws-sam-cli (sam)
#   .local/checkov     Python venv: checkov (its own: it pins cfn-lint and boto3 ranges of
#                      its own, which need not agree with the SAM CLI's)
#   .local/node        npm prefix:  asl-validator
#
# aws-sam-cli 1.161.1 is the newest release whose cfn-lint range (>=1.45,<1.52) admits the
# pinned cfn-lint 1.51.0; later releases require cfn-lint >=1.51.3.
set -euo pipefail

CFN_LINT_VERSION=1.51.0
SAM_CLI_VERSION=1.161.1
CHECKOV_VERSION=3.3.30
ASL_VALIDATOR_VERSION=4.0.0

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.local/venv"
checkov_venv="$root/.local/checkov"
node_prefix="$root/.local/node"

python_bin="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv"
    "$python_bin" -m venv "$venv"
fi

# --no-compile: the linters import a small part of what they install, compiled on first use
# (scripts/setup-emulator.sh compiles moto's: every pytest worker imports it at once).
installed() { "$venv/bin/python" -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }

if [ "$(installed cfn-lint)" != "$CFN_LINT_VERSION" ] || [ "$(installed aws-sam-cli)" != "$SAM_CLI_VERSION" ]; then
    echo "installing cfn-lint $CFN_LINT_VERSION and aws-sam-cli $SAM_CLI_VERSION into $venv"
    "$venv/bin/python" -m pip install --quiet --no-compile --disable-pip-version-check \
        "cfn-lint==$CFN_LINT_VERSION" "aws-sam-cli==$SAM_CLI_VERSION"
fi

if [ ! -x "$checkov_venv/bin/python" ]; then
    echo "creating $checkov_venv"
    "$python_bin" -m venv "$checkov_venv"
fi
# `pip show` fails while checkov is not installed yet: that is "no version", not an error.
checkov_installed="$("$checkov_venv/bin/python" -m pip show checkov 2>/dev/null | sed -n 's/^Version: //p' || true)"
if [ "$checkov_installed" != "$CHECKOV_VERSION" ]; then
    echo "installing checkov $CHECKOV_VERSION into $checkov_venv"
    "$checkov_venv/bin/python" -m pip install --quiet --no-compile --disable-pip-version-check "checkov==$CHECKOV_VERSION"
fi

asl_installed="$(node -p "require('$node_prefix/node_modules/asl-validator/package.json').version" 2>/dev/null || true)"
if [ "$asl_installed" != "$ASL_VALIDATOR_VERSION" ]; then
    echo "installing asl-validator $ASL_VALIDATOR_VERSION into $node_prefix"
    mkdir -p "$node_prefix"
    npm install --silent --no-audit --no-fund --prefix "$node_prefix" "asl-validator@$ASL_VALIDATOR_VERSION"
fi

echo "cfn-lint    $("$venv/bin/cfn-lint" --version)"
echo "sam         $("$venv/bin/sam" --version)"
echo "checkov     $("$checkov_venv/bin/checkov" --version)"
echo "asl-validator $(node -p "require('$node_prefix/node_modules/asl-validator/package.json').version")"
