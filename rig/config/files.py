"""Reading a YAML configuration file: line numbers per key path, `${ENV}` substitution, error lines.

`rig.config` defines what a bench or variant file means; this module only turns a file on disk into
plain data plus a map from key path to line number, so that every problem can be reported as
`benches/lab.yaml:42: paths.satellite.verify.expect: expected …, found …`.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rig.errors import ConfigError

KeyPath = tuple[str | int, ...]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# Keys that would put a secret into a file. Refused wherever they appear.
_SECRET_KEYS = {"password", "passphrase", "secret", "passwd"}


def dotted(path: Iterable[str | int]) -> str:
    """`('paths', 'satellite', 'verify', 'expect')` → `paths.satellite.verify.expect`; list items as `[3]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


@dataclass
class SourceFile:
    """A YAML file as data, with where each key path sits in the text."""

    path: Path
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def display(self) -> str:
        """The file's name as the user typed it (relative when under the working directory)."""
        try:
            return str(self.path.resolve().relative_to(Path.cwd()))
        except ValueError:
            return str(self.path)

    def where(self, key: KeyPath) -> str:
        """`file:line` for the deepest known prefix of `key`."""
        probe = tuple(key)
        while probe and probe not in self.lines:
            probe = probe[:-1]
        line = self.lines.get(probe)
        return f"{self.display}:{line}" if line else self.display

    def problem(self, key: KeyPath, text: str) -> str:
        """One error line naming the file, line, key path and the problem."""
        return f"{self.where(key)}: {dotted(key)}: {text}"


def read_yaml(path: Path, env: Mapping[str, str] | None = None) -> SourceFile:
    """Read `path` as one YAML mapping, substitute `${VAR}` / `${VAR:-default}`, refuse plain secrets."""
    env = os.environ if env is None else env
    display = SourceFile(path, None).display
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{display}: file not found — check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{display}: cannot read the file ({exc}) — check its permissions") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{display}:{mark.line + 1}:{mark.column + 1}" if mark else display
        what = exc.problem or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {what} — check indentation, quoting and colons") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{display}: invalid YAML: {exc}") from None
    source = SourceFile(path, data, env=env)
    problems: list[str] = []
    if node is not None:
        _collect_lines(node, (), source.lines, source, problems)
    if not isinstance(data, dict):
        found = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ConfigError(f"{display}: expected a mapping of keys at the top level, found {found}")
    _refuse_secrets(data, (), source, problems)
    source.data = _substitute(data, (), source, problems)
    if problems:
        raise ConfigError(problems[0], problems=problems)
    return source


def _collect_lines(
    node: yaml.Node, path: KeyPath, out: dict[KeyPath, int], source: SourceFile, problems: list[str]
) -> None:
    """Record each key path's line; a key given twice in one mapping is a problem naming both lines.

    PyYAML keeps the last of duplicated keys without a word, so a second `rtt_ms:` further down a path
    would silently win: the file is refused instead.
    """
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        first_line: dict[object, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in first_line:
                problems.append(
                    f"{source.display}:{line}: {dotted((*path, key))}: duplicate key (first given on line "
                    f"{first_line[key]}; YAML would keep only the last) — keep one of them"
                )
                continue
            first_line[key] = line
            out[(*path, key)] = line
            _collect_lines(value_node, (*path, key), out, source, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _collect_lines(item, (*path, index), out, source, problems)


def _refuse_secrets(data: Any, path: KeyPath, source: SourceFile, problems: list[str]) -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and key.lower() in _SECRET_KEYS:
                problems.append(
                    source.problem(
                        (*path, key),
                        "plain passwords are refused in bench files — for SSH use `key_file:` or "
                        "`agent: true`; for a broker use `password_env: VARIABLE` to read it from the environment",
                    )
                )
            else:
                _refuse_secrets(value, (*path, key), source, problems)
    elif isinstance(data, list):
        for index, item in enumerate(data):
            _refuse_secrets(item, (*path, index), source, problems)


def _substitute(data: Any, path: KeyPath, source: SourceFile, problems: list[str]) -> Any:
    if isinstance(data, dict):
        return {k: _substitute(v, (*path, k), source, problems) for k, v in data.items()}
    if isinstance(data, list):
        return [_substitute(v, (*path, i), source, problems) for i, v in enumerate(data)]
    if not isinstance(data, str) or "${" not in data:
        return data

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in source.env:
            return source.env[name]
        if default is not None:
            return default
        problems.append(
            source.problem(path, f"environment variable {name} is not set (referenced as ${{{name}}})")
        )
        return match.group(0)

    value = _ENV_REF.sub(replace, data)
    # A whole-value reference may stand for a number or a boolean: let YAML type it again.
    if _ENV_REF.fullmatch(data):
        try:
            typed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if isinstance(typed, int | float | bool):
            return typed
    return value


def validation_problems(
    source: SourceFile, exc: ValidationError, allowed: Callable[[KeyPath], list[str]] | None = None
) -> list[str]:
    """Turn pydantic's errors into one precise line each: file:line, key path, expected, found, hint."""
    problems: list[str] = []
    for error in exc.errors(include_url=False):
        loc = tuple(
            part for part in error["loc"] if not (isinstance(part, str) and part.startswith("function-"))
        )
        key: KeyPath = tuple(p for p in loc if isinstance(p, str | int))
        keys = allowed(key[:-1]) if allowed and error["type"] == "extra_forbidden" else []
        problems.append(source.problem(key, _describe(error, key, keys)))
    return problems


def _describe(error: Any, key: KeyPath, allowed: list[str]) -> str:
    kind: str = error["type"]
    found = error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        hint = " — remove it or check the spelling"
        if isinstance(key[-1], str) and allowed:
            close = difflib.get_close_matches(key[-1], allowed, n=1)
            hint = f" — did you mean `{close[0]}`?" if close else f" — allowed keys: {', '.join(allowed)}"
        return f"unknown key{hint}"
    if kind in ("literal_error", "enum"):
        return f"expected one of {ctx.get('expected', '?')}, found {_show(found)}"
    expected = {
        "int_parsing": "an integer",
        "int_type": "an integer",
        "int_from_float": "a whole number",
        "float_parsing": "a number",
        "float_type": "a number",
        "bool_parsing": "true or false",
        "bool_type": "true or false",
        "string_type": "a string",
        "dict_type": "a mapping of keys",
        "model_type": "a mapping of keys",
        "list_type": "a list",
    }.get(kind)
    if expected:
        return f"expected {expected}, found {_show(found)}"
    message = str(error.get("msg", kind))
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return f"{message} (found {_show(found)})" if found is not None and kind != "value_error" else message


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"
