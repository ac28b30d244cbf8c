"""The names and string formats the Rust code owns, read from `spotstep contract`.

The local stage and the benchmark never spell a function name, an ARN placeholder, a state
name, a tag key or a key/comment layout themselves: they ask this module, which runs the
`spotstep` CLI once per binary and keeps its JSON. A Rust-made string that does not match its
format raises `FormatMismatch` naming the string and the expected format, so a change on the
Rust side fails loudly here instead of turning into "" or None.

The binary is `$SPOTSTEP_TARGET_DIR/spotstep` when that variable is set, else
`<repo>/target/debug/spotstep`.
"""

import functools
import json
import os
import re
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The contract layout this module reads (`spotstep::contract::VERSION`).
VERSION = 1


class ContractError(RuntimeError):
    """The contract cannot be read, or lacks what is asked of it."""


class FormatMismatch(ValueError):
    """A string the Rust side made does not have the format the contract states."""

    def __init__(self, name: str, text, expected: str):
        super().__init__(f"{name}: {text!r} is not {expected}")
        self.name = name
        self.text = text


def binary() -> str:
    target = os.environ.get("SPOTSTEP_TARGET_DIR") or os.path.join(REPO, "target", "debug")
    return os.path.join(target, "spotstep")


@functools.lru_cache(maxsize=None)
def _load(path: str) -> dict:
    try:
        done = subprocess.run([path, "contract"], capture_output=True, text=True, timeout=60)
    except OSError as e:
        raise ContractError(f"cannot run `{path} contract` ({e}); build first: cargo build -j2 --workspace --bins") from e
    if done.returncode != 0:
        raise ContractError(f"`{path} contract` failed (exit {done.returncode}): {done.stderr.strip()}")
    data = json.loads(done.stdout)
    if data.get("version") != VERSION:
        raise ContractError(f"`{path} contract` is version {data.get('version')}, this module reads version {VERSION}")
    return data


def load() -> dict:
    """The whole contract (see `src/contract.rs`), read once per binary."""
    return _load(binary())


def _get(section: str, key: str):
    values = load()[section]
    if key not in values:
        raise ContractError(f"the contract has no {section} `{key}` (it has: {', '.join(sorted(values))})")
    return values[key]


def functions() -> list:
    """The function names, in flow order."""
    return [f["name"] for f in load()["functions"]]


def arn_placeholders() -> dict:
    """{placeholder in the generated definitions: function name}."""
    return {f["arn_placeholder"]: f["name"] for f in load()["functions"]}


def state(key: str) -> str:
    """A fixed state name by its key (`name_the_run` -> `Name the run`)."""
    return _get("states", key)


def tag(key: str) -> str:
    """An instance tag key by its key (`run_id` -> `spotstep:run-id`)."""
    return _get("tags", key)


def workdir_template() -> str:
    """The `mktemp -d` template of the folder each step's command makes on the instance."""
    return load()["instance"]["workdir_template"]


def timing(which: str) -> dict:
    """The `production` or `local` intervals of the generated definitions."""
    return _get("timing", which)


class Format:
    """One format: `make(**fields)` writes a string, `parse(text)` reads one back."""

    def __init__(self, name: str, spec: dict):
        self.name = name
        self.template = spec["template"]
        self.regex = spec["regex"]
        self.fields = list(spec["fields"])
        self._compiled = re.compile(self.regex)

    def make(self, **fields) -> str:
        missing = [f for f in self.fields if f not in fields]
        if missing:
            raise ContractError(f"{self.name}: missing {', '.join(missing)} for {self.template!r}")
        text = self.template.format(**fields)
        self.parse(text)
        return text

    def prefix(self, up_to: str, **fields) -> str:
        """The template's text before field `up_to`, with the fields before it filled in
        (`staging_prefix.prefix("run_id", job="demo")` -> `tmp/demo/`)."""
        marker = "{" + up_to + "}"
        if marker not in self.template:
            raise ContractError(f"{self.name}: no field `{up_to}` in {self.template!r}")
        return self.template.split(marker, 1)[0].format(**fields)

    def match(self, text):
        """The fields of `text`, or None when it does not have this format."""
        m = self._compiled.fullmatch(text) if isinstance(text, str) else None
        return m.groupdict() if m else None

    def parse(self, text) -> dict:
        """The fields of `text`; raises `FormatMismatch` when it does not have this format."""
        fields = self.match(text)
        if fields is None:
            raise FormatMismatch(self.name, text, f"of the format {self.template!r} (regex {self.regex!r})")
        return fields


@functools.lru_cache(maxsize=None)
def _format(path: str, name: str) -> Format:
    formats = _load(path)["formats"]
    if name not in formats:
        raise ContractError(f"the contract has no format `{name}` (it has: {', '.join(sorted(formats))})")
    return Format(name, formats[name])


def fmt(name: str) -> Format:
    """The format `name` (`command_comment`, `step_log_prefix`, `ssm_output_key`, ...)."""
    return _format(binary(), name)


def callback_resource() -> str:
    """The `Resource` of a waiting send state (`lambda:invoke.waitForTaskToken`): its
    function is `Parameters.FunctionName`."""
    return load()["callback_resource"]


def detail_type(key: str) -> str:
    """An EventBridge `detail-type` poll-result is told by (`command_invocation`,
    `spot_warning`, `instance_state`, `scheduled`)."""
    return _get_in(load()["events"], "detail_types", key)


def event_rules() -> list:
    """[{"name", "pattern"}] of the rules feeding poll-result (`template.yaml` has the same)."""
    return load()["events"]["rules"]


def _get_in(section: dict, name: str, key: str):
    values = section[name]
    if key not in values:
        raise ContractError(f"the contract has no {name} `{key}` (it has: {', '.join(sorted(values))})")
    return values[key]
