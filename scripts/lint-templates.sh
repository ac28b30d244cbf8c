#!/usr/bin/env bash
# Lints the deployment: the SAM template (sam validate --lint, cfn-lint, checkov: any failed
# check fails; the template's own per-resource skips say why) and every state machine
# definition (asl-validator). Needs no AWS account: the credentials below are dummies
# that nothing sends anywhere. Install the tools first with scripts/setup-tools.sh.
# Exits non-zero when any check fails.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.local/venv"
asl_validator="$root/.local/node/node_modules/.bin/asl-validator"
checkov="$root/.local/checkov/bin/checkov"

if [ ! -x "$venv/bin/sam" ] || [ ! -x "$venv/bin/cfn-lint" ] || [ ! -x "$asl_validator" ] || [ ! -x "$checkov" ]; then
    echo "lint tools missing: run scripts/setup-tools.sh" >&2
    exit 2
fi

export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE
export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
export AWS_DEFAULT_REGION=us-east-1
export AWS_REGION=us-east-1
export SAM_CLI_TELEMETRY=0
# checkov offline: no download of the platform's guideline mappings.
export BC_SKIP_MAPPING=TRUE

failed=0
check() {
    echo "== $*"
    if ! "$@"; then
        echo "FAILED: $*" >&2
        failed=1
    fi
}

check "$venv/bin/sam" validate --lint --region us-east-1 --template-file template.yaml
check "$venv/bin/cfn-lint" --include-checks I -- template.yaml
check "$checkov" --file template.yaml --framework cloudformation --compact --quiet --skip-download
# cfn-lint does not check that the actions of the functions' inline policies exist: a typo
# (or a non-action such as s3:HeadObject) would only show at run time as AccessDenied.
check "$venv/bin/python" - template.yaml <<'PY'
import fnmatch, json, os, sys
import cfnlint
from cfnlint.decode import decode

template, problems = decode(sys.argv[1])
if problems:
    sys.exit(f"cannot read {sys.argv[1]}: {problems}")
spec = os.path.join(os.path.dirname(cfnlint.__file__), "data", "AdditionalSpecs", "Policies.json")
with open(spec) as f:
    known = {prefix: set(service["Actions"]) for prefix, service in json.load(f).items()}

def branches(statement):
    # A statement chosen by Fn::If stands for both of its branches (AWS::NoValue for none).
    if isinstance(statement, dict) and "Fn::If" in statement:
        for branch in statement["Fn::If"][1:]:
            yield from branches(branch)
    elif statement != {"Ref": "AWS::NoValue"}:
        yield statement

def statements(node):
    if isinstance(node, dict):
        found = node.get("Statement")
        if isinstance(found, list):
            for statement in found:
                yield from branches(statement)
        elif isinstance(found, dict):
            yield found
        for value in node.values():
            yield from statements(value)
    elif isinstance(node, list):
        for value in node:
            yield from statements(value)

unknown = []
for statement in statements(template["Resources"]):
    actions = statement.get("Action", [])
    for action in [actions] if isinstance(actions, str) else actions:
        service, _, name = action.partition(":")
        # A wildcard (only a KMS key policy's account statement has one) must match an action.
        if not fnmatch.filter(known.get(service, ()), name.lower()):
            unknown.append(action)
if unknown:
    sys.exit("unknown IAM actions: " + ", ".join(sorted(set(unknown))))
print("IAM actions: all known")
PY
shopt -s nullglob
definitions=(statemachine/*.asl.json)
if [ ${#definitions[@]} -eq 0 ]; then
    echo "no state machine definitions in statemachine/ (run: cargo run --bin spotstep -- asl-all)" >&2
    failed=1
fi
for definition in "${definitions[@]}"; do
    check "$asl_validator" --json-path "$definition"
done

if [ "$failed" -ne 0 ]; then
    echo "lint: FAILED" >&2
    exit 1
fi
echo "lint: ok"
