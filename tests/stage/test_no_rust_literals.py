"""No Python file under local/ or bench/ spells a name or format the Rust side owns: each
reads it from the contract (`spotstep contract`) instead.

What counts, in every string literal outside docstrings (f-strings read with `{}` in place
of each expression):
- a function ARN placeholder (`${LaunchFunctionArn}`, ...) anywhere in it;
- a fixed state name (`Name the run`, ...) as the whole literal, or a per-step state name's
  fixed part (`: poll`, ...) anywhere in it;
- a tag key (`spotstep:run-id`, ...) anywhere in it (the AWS `Name` tag aside);
- a format's fixed part with a non-letter and two letters or digits: the leading one
  (`logs/`, `tmp/`, ...) at the start of the literal, any other (`/config.yaml`, `_log/`,
  `: poll`, `/awsrunShellScript/...`) right after a field value anywhere in it (so prose
  such as "the `<step>: poll` state" passes);
- two fixed parts with two letters each around one field value (`spotstep {} run`)
  anywhere in it (lone words such as `round` are dictionary keys and field names too);
- the instance work folder template (`/tmp/spotstep.XXXXXX`) anywhere in it;
and no list, tuple or set literal names every function (the function list).
"""

import ast
import re
from pathlib import Path

from spotstep_local import contract

REPO = Path(__file__).resolve().parent.parent.parent
# The contract loader names the contract's keys, never its values; it is scanned too.
SCANNED = sorted(p for d in ("local", "bench") for p in (REPO / d).rglob("*.py"))


def literals(tree: ast.AST):
    """(line, text) of every string literal that is not a docstring."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    parts_of_fstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = ""
            for part in node.values:
                if isinstance(part, ast.Constant):
                    parts_of_fstrings.add(id(part))
                    text += part.value
                else:
                    text += "{}"
            yield node.lineno, text
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and id(node) not in parts_of_fstrings
        ):
            yield node.lineno, node.value


def fixed_parts(template: str) -> list:
    return [p for p in re.split(r"\{[a-z_]+\}", template) if p]


def letters(text: str) -> int:
    return sum(c.isalnum() for c in text)


def rules() -> list:
    """(description, predicate(text)) for everything a literal may not spell."""
    c = contract.load()
    out = []

    def anywhere(what, needle):
        out.append((f"{what} {needle!r}", lambda text: needle in text))

    for placeholder in contract.arn_placeholders():
        anywhere("function ARN placeholder", placeholder)
    for name in c["states"].values():
        out.append((f"state name {name!r}", lambda text, name=name: text == name))
    for key, tag in c["tags"].items():
        if key != "name":
            anywhere("tag key", tag)
    anywhere("instance work folder template", contract.workdir_template())
    for name, spec in c["formats"].items():
        parts = fixed_parts(spec["template"])
        for i, part in enumerate(parts):
            word = part.strip()
            what = f"the fixed part {part!r} of format {name} ({spec['template']!r})"
            if word.isalpha() or letters(word) < 2:
                continue
            if i == 0 and spec["template"].startswith(part):
                out.append((what, lambda text, part=part: text.startswith(part)))
            else:
                # Right after a field value (or an f-string's `{}`), not inside a longer word.
                after = r"(?<=[A-Za-z0-9_}-])" if not spec["template"].startswith(part) else ""
                before = r"(?![A-Za-z0-9])" if part[-1].isalnum() else ""
                pattern = re.compile(after + re.escape(part) + before)
                out.append((what, lambda text, p=pattern: bool(p.search(text))))
        for a, b in zip(parts, parts[1:]):
            if letters(a) >= 2 and letters(b) >= 2:
                # The two parts with one field value (no space, no `/`) between them.
                pattern = re.compile(re.escape(a) + r"[^\s/]*" + re.escape(b))
                out.append((f"the fixed parts {a!r}...{b!r} of format {name}", lambda text, p=pattern: bool(p.search(text))))
    return out


def function_lists(tree: ast.AST):
    """(line, names) of every list, tuple or set literal naming every function."""
    functions = set(contract.functions())
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            names = [e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in functions]
            if set(names) == functions:
                yield node.lineno, names


def violations(source: str, path: str) -> list:
    checks = rules()
    tree = ast.parse(source, path)
    found = []
    for line, text in sorted(literals(tree)):
        for what, spells in checks:
            if spells(text):
                found.append(f"{path}:{line}: {text!r} spells {what}")
    for line, names in function_lists(tree):
        found.append(f"{path}:{line}: {names!r} spells the function list")
    return found


def test_the_scan_sees_what_it_looks_for():
    bad = '''
"""A docstring may say logs/<job>/<run_id>/<step> and Name the run."""
A = "${LaunchFunctionArn}"
B = states["Name the run"]
C = f"logs/{job}/{run_id}/{step}"
D = "x/awsrunShellScript/0.awsrunShellScript/stdout"
E = f"health/{step}_log/{date}/"
F = tags.get("spotstep:run-id")
G = f"{step}: poll"
H = key.startswith("tmp/")
I = f"mktemp -d /tmp/spotstep.XXXXXX"
J = f"spotstep {s} run {h} round {n}"
K = ("cleanup", "launch", "poll-result", "send-step", "wait-online")
'''
    found = violations(bad, "x.py")
    lines = sorted({int(v.split(":")[1]) for v in found})
    assert lines == list(range(3, 14)), found
    assert "x.py:3: '${LaunchFunctionArn}' spells function ARN placeholder" in found[0]


def test_the_scan_lets_ordinary_text_through():
    fine = '''
A = "spotstep-bench-"
B = f"spotstep-{job}"
C = "API round trips, the `<step>: poll` state, policy: polls"
D = "/tmp"
E = d["run"]
F = "the run"
G = "Name"
H = os.path.join(target, "spotstep")
I = fields["round"]
J = functions["poll-result"]
K = ("send-step", "poll-result")
'''
    assert violations(fine, "x.py") == []


def test_no_python_file_spells_a_rust_owned_name_or_format():
    assert SCANNED, "nothing to scan"
    found = []
    for path in SCANNED:
        found += violations(path.read_text(), str(path.relative_to(REPO)))
    assert not found, "read these from the contract (local/spotstep_local/contract.py):\n" + "\n".join(found)
