"""Generate the README's event catalogue and settings reference from the code.

    python -m fangkong_cli.docs            # rewrite the generated blocks of README.md
    python -m fangkong_cli.docs --check    # exit 1 when README.md is stale

Only the text between ``<!-- BEGIN GENERATED: events -->`` / ``<!-- END GENERATED: events -->``
and the same ``settings`` markers is written. The catalogue comes from
``fangkong_common.events`` (topics, payload models), producers from the services'
source (which service constructs which payload, and what it passes as the
envelope key), consumers from each service's ``CONSUMERS``. The settings come
from ``CommonSettings`` and each service's ``Settings`` (descriptions from the
``Field`` description or the comment above the field), plus the variables the
``fangkong`` command reads itself.
"""

from __future__ import annotations

import ast
import enum
import importlib
import importlib.util
import inspect
import json
import re
import sys
import textwrap
import types
import typing
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer
from fangkong_common.events import schemas, topics
from fangkong_common.events.envelope import EventPayload
from fangkong_common.settings import CommonSettings
from pydantic import AwareDatetime, BaseModel, SecretStr
from pydantic.fields import FieldInfo

from fangkong_cli.services import SERVICE_NAMES

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BLOCKS = ("events", "settings")
SECRET_DEFAULT = "(must be set in production)"


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _sources(package: str) -> Iterable[Path]:
    """A service's own code: not its migrations (frozen history) nor tests."""
    for path in sorted(_package_dir(package).rglob("*.py")):
        if "migrations" not in path.parts and "tests" not in path.parts:
            yield path


# --- producers and partition keys --------------------------------------------------------------


def _name_of(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _key_argument(call: ast.Call, payload: ast.expr) -> ast.expr | None:
    """The envelope key given beside ``payload`` to an emitting call: ``Envelope.wrap(p, key=k)``,
    ``emit(session, p, k)``, ``event_envelope(p, k)``."""
    for keyword in call.keywords:
        if keyword.arg == "key":
            return keyword.value
    args = list(call.args)
    for i, arg in enumerate(args):
        if arg is payload and i + 1 < len(args):
            return args[i + 1]
    return None


def _fields_for_key(key: ast.expr, construction: ast.Call, model: type[EventPayload]) -> list[str]:
    """Which payload field(s) the key expression is: ``person_key=row["k"]`` with key ``row["k"]``,
    ``person.person_key``, ``a or b`` (one, else the other)."""
    if isinstance(key, ast.BoolOp):
        return [f for value in key.values for f in _fields_for_key(value, construction, model)]
    source = ast.unparse(key)
    for keyword in construction.keywords:
        if keyword.arg in model.model_fields and ast.unparse(keyword.value) == source:
            return [keyword.arg]
    if isinstance(key, ast.Attribute) and key.attr in model.model_fields:
        return [key.attr]
    if isinstance(key, ast.Name) and key.id in model.model_fields:
        return [key.id]
    return []


@dataclass
class Production:
    services: set[str] = field(default_factory=set)
    keys: list[str] = field(default_factory=list)  # payload fields used as the envelope key, in order


def _parse(source: str) -> ast.Module:
    """``ast.parse`` on a fresh thread. CPython 3.11 before 3.11.8 can fail with "AST constructor
    recursion depth mismatch" when parsing from deep in a busy interpreter (gh-106905; it did
    within the full test suite); a new thread starts with a clean recursion count."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(ast.parse, source).result()


def scan_producers() -> dict[str, Production]:
    """``{event type: Production}`` from the services' source code."""
    models = {model.__name__: model for model in schemas.PAYLOAD_MODELS.values()}
    found: dict[str, Production] = {}
    for service in SERVICE_NAMES:
        for path in _sources(service):
            tree = _parse(path.read_text(encoding="utf-8"))
            parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
            calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
            # Emitting calls whose payload is not built in place (a variable, a helper's result).
            indirect = [(call, _key_argument(call, call.args[0] if call.args else None))
                        for call in calls if any(k.arg == "key" for k in call.keywords)]
            for call in calls:
                model = models.get(_name_of(call))
                if model is None:
                    continue
                production = found.setdefault(model.event_type, Production())
                production.services.add(service)
                keys: list[str] = []
                parent = parents.get(call)
                if isinstance(parent, ast.Call):
                    key = _key_argument(parent, call)
                    if key is not None:
                        keys = _fields_for_key(key, call, model)
                if not keys:
                    for _emit, key in indirect:
                        if key is not None:
                            keys = _fields_for_key(key, call, model)
                            if keys:
                                break
                for key in keys:
                    if key not in production.keys:
                        production.keys.append(key)
    return found


def consumers() -> dict[str, list[tuple[str, str]]]:
    """``{topic: [(service, group), …]}`` from each service's ``CONSUMERS``."""
    by_topic: dict[str, list[tuple[str, str]]] = {}
    for service in SERVICE_NAMES:
        for spec in importlib.import_module(f"{service}.consumers").CONSUMERS:
            for topic in spec.topics:
                by_topic.setdefault(topic, []).append((service, spec.group))
    return by_topic


# --- types ---------------------------------------------------------------------------------------


def _aliases() -> dict[str, str]:
    """Named constrained strings of the schemas module (``RegionCode``, ``PersonKey``) by pattern."""
    named = {}
    for name, value in vars(schemas).items():
        if typing.get_origin(value) is Annotated:
            for meta in typing.get_args(value)[1:]:
                if getattr(meta, "pattern", None):
                    named[meta.pattern] = name
    return named


def _constraints(metadata: Iterable) -> str:
    parts = []
    for meta in metadata:
        for attr, symbol in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"),
                             ("min_length", "min length"), ("max_length", "max length")):
            value = getattr(meta, attr, None)
            if value is not None:
                parts.append(f"{symbol} {value}")
    return ", ".join(parts)


def type_name(annotation, metadata: Iterable = (), nested: set[type] | None = None) -> str:
    """A short, readable name of a field's type for a Markdown table."""
    aliases = _aliases()
    for meta in metadata:
        if getattr(meta, "pattern", None):
            return aliases.get(meta.pattern, f"str `{meta.pattern}`")
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return type_name(args[0], args[1:], nested)
    if origin in (typing.Union, types.UnionType):
        names = [type_name(a, (), nested) for a in args if a is not type(None)]
        return " \\| ".join(names) + (" \\| null" if type(None) in args else "")
    if origin is typing.Literal:
        return " \\| ".join(f"`{json.dumps(a)}`" if isinstance(a, str) else f"`{a}`" for a in args)
    if origin in (list, tuple, set, frozenset):
        return f"list[{type_name(args[0], (), nested)}]" if args else "list"
    if inspect.isclass(annotation):
        if issubclass(annotation, enum.Enum):
            return " \\| ".join(f"`{m.value}`" for m in annotation)
        if issubclass(annotation, BaseModel):
            if nested is not None:
                nested.add(annotation)
            return annotation.__name__
        if issubclass(annotation, SecretStr):
            return "secret"
        if issubclass(annotation, AwareDatetime):
            return "datetime (with zone)"
        if issubclass(annotation, datetime):
            return "datetime"
        if issubclass(annotation, date):
            return "date"
        if issubclass(annotation, uuid.UUID):
            return "uuid"
        if issubclass(annotation, Path):
            return "path"
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


# --- the event catalogue ------------------------------------------------------------------------------


def _fields_table(model: type[BaseModel], nested: set[type]) -> list[str]:
    lines = ["| field | type | required | description |", "|---|---|---|---|"]
    for name, info in model.model_fields.items():
        typ = type_name(info.annotation, info.metadata, nested)
        limits = _constraints(info.metadata)
        if limits:
            typ += f" ({limits})"
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        required = "yes" if info.is_required() else "no" if default is None else \
            f"no (default `{json.dumps(_plain(default), ensure_ascii=False)}`)"
        lines.append(f"| `{name}` | {typ} | {required} | {_cell(info.description or '')} |")
    return lines


def _plain(value):
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value) if value.is_absolute() else f"./{value}"
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def events_markdown() -> str:
    produced = scan_producers()
    consumed = consumers()
    lines = [
        ("Every topic carries one event type; the envelope's `key` (the partition key) keeps one "
         "person's — or one tube's, one site's — events in order on one partition. Producers are found "
         "in the services' code, consumers in their `CONSUMERS` (service: consumer group); an event a "
         "consumer cannot apply goes to `<topic>.dlq`."),
        "",
        "| topic | payload | version | partition key | producers | consumers |",
        "|---|---|---|---|---|---|",
    ]
    models = sorted(schemas.PAYLOAD_MODELS.items(), key=lambda item: (topics.ALL_TOPICS.index(item[0][0]), item[0][1]))
    for (event_type, version), model in models:
        production = produced.get(event_type, Production())
        key = ", else ".join(f"`{k}`" for k in production.keys) or "—"
        producers = ", ".join(sorted(production.services)) or "—"
        readers = ", ".join(f"{service} (`{group}`)" for service, group in consumed.get(event_type, [])) or "—"
        lines.append(f"| `{event_type}` | [`{model.__name__}`](#{model.__name__.lower()}) | {version} | {key} | "
                     f"{producers} | {readers} |")
    unknown = set(consumed) - set(topics.ALL_TOPICS)
    if unknown:  # pragma: no cover - tests/test_deployment.py refuses this
        raise RuntimeError(f"consumed topics missing from the catalogue: {sorted(unknown)}")

    nested: set[type] = set()
    for (event_type, version), model in models:
        lines += ["", f"#### {model.__name__}", ""]
        doc = inspect.getdoc(model)
        if doc and model.__doc__ is not None and "__doc__" in vars(model):
            lines += [f"`{event_type}` v{version}. {_cell(doc)}", ""]
        else:
            lines += [f"`{event_type}` v{version}.", ""]
        lines += _fields_table(model, nested)
    done: set[type] = set()
    while nested - done:
        model = min(nested - done, key=lambda m: m.__name__)
        done.add(model)
        lines += ["", f"#### {model.__name__}", "", "Part of a payload above.", ""]
        lines += _fields_table(model, nested)
    aliases = _aliases()
    if aliases:
        lines += ["", "Named strings: " + "; ".join(f"`{name}` matches `{pattern}`"
                                                    for pattern, name in sorted(aliases.items(), key=lambda i: i[1]))
                  + "."]
    return "\n".join(lines)


# --- settings --------------------------------------------------------------------------------------------


def _comments(cls: type) -> dict[str, str]:
    """The comment block right above each field of ``cls`` (its own body only)."""
    try:
        lines, _start = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return {}
    source = textwrap.dedent("".join(lines))
    tree = _parse(source)
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    text = source.splitlines()
    found = {}
    for node in body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            block, row = [], node.lineno - 2
            while row >= 0 and text[row].strip().startswith("#"):
                block.insert(0, text[row].strip().lstrip("#").strip())
                row -= 1
            if block:
                found[node.target.id] = " ".join(block)
    return found


def _descriptions(cls: type) -> dict[str, str]:
    """Field descriptions, the nearest class's comment winning over its bases'."""
    merged: dict[str, str] = {}
    for klass in reversed([k for k in cls.__mro__ if isinstance(k, type) and issubclass(k, CommonSettings)]):
        merged.update(_comments(klass))
    for name, info in cls.model_fields.items():
        if info.description:
            merged[name] = info.description
    return merged


def _is_secret(info: FieldInfo) -> bool:
    annotation = info.annotation
    return inspect.isclass(annotation) and issubclass(annotation, SecretStr)


def _default(info: FieldInfo) -> str:
    if _is_secret(info):
        return SECRET_DEFAULT
    value = _plain(info.get_default(call_default_factory=True))
    if value is None:
        return "unset"
    if value == "":
        return '`""`'
    return f"`{json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value}`"


def _expansions(fstring: ast.JoinedStr, constants: list[tuple[str, ...]]) -> list[str]:
    """The names an f-string can take: ``f"FANGKONG_{name.upper()}_DATABASE_URL"`` one per service;
    a bare ``f"FANGKONG_{name.upper()}"`` one per name in the module's tuples of names (``_NAMES``)."""
    parts = fstring.values
    placeholders = [i for i, v in enumerate(parts) if isinstance(v, ast.FormattedValue)]
    if len(placeholders) != 1:
        return []
    at = placeholders[0]
    candidates = list(SERVICE_NAMES) if at + 1 < len(parts) else [c for group in constants for c in group]
    before = "".join(v.value for v in parts[:at] if isinstance(v, ast.Constant))
    after = "".join(v.value for v in parts[at + 1:] if isinstance(v, ast.Constant))
    return [f"{before}{c.upper()}{after}" for c in candidates]


def cli_variables() -> dict[str, str]:
    """FANGKONG_ variables the ``fangkong`` command reads itself (``os.environ.get``, ``os.getenv``,
    ``os.environ[…]``): ``{name: what the command's help says about it, or where it is read}``."""
    found: dict[str, str] = {}
    helps: dict[str, str] = {}
    package = _package_dir("fangkong_cli")
    for path in sorted(package.rglob("*.py")):
        tree = _parse(path.read_text(encoding="utf-8"))
        constants = [tuple(e.value for e in node.value.elts) for node in tree.body
                     if isinstance(node, ast.Assign) and isinstance(node.value, (ast.Tuple, ast.List))
                     and node.value.elts and all(isinstance(e, ast.Constant) and isinstance(e.value, str)
                                                 for e in node.value.elts)]
        for node in ast.walk(tree):
            # An option's help naming its variable: "an admin token [env FANGKONG_TOKEN]".
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for match in re.finditer(r"\[env (FANGKONG_[A-Z0-9_]+)", node.value):
                    helps.setdefault(match[1], node.value[:node.value.index("[")].strip())
            arg = None
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.environ.get", "os.getenv") and node.args:
                arg = node.args[0]
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
                arg = node.slice
            names = []
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names = [arg.value]
            elif isinstance(arg, ast.JoinedStr):
                names = _expansions(arg, constants)
            for name in names:
                if name.startswith("FANGKONG_"):
                    found.setdefault(name, f"read in `{path.relative_to(package.parent).as_posix()}`")
    return {name: helps.get(name, where) for name, where in found.items()} | \
        {name: text for name, text in helps.items() if name not in found}


def settings_markdown() -> str:
    classes = {service: importlib.import_module(f"{service}.config").Settings for service in SERVICE_NAMES}
    for service, cls in classes.items():
        if not issubclass(cls, CommonSettings):  # pragma: no cover - every service's settings are
            raise TypeError(f"{service}.config.Settings is not a CommonSettings")
    prefix = CommonSettings.model_config["env_prefix"]
    common = CommonSettings.model_fields
    descriptions = _descriptions(CommonSettings)
    for cls in classes.values():
        for name, text in _descriptions(cls).items():
            descriptions.setdefault(name, text)
            if name not in common:
                descriptions[name] = text

    for variable, text in cli_variables().items():
        name = variable.removeprefix(prefix).lower()
        if text and not text.startswith("read in") and name in common:
            descriptions.setdefault(name, text)
    lines = [
        ("Read from the environment by every service (pydantic-settings; lists as JSON). "
         "\"all\" is every service and the `fangkong` command."),
        "",
        "| variable | type | default | services | description |",
        "|---|---|---|---|---|",
    ]
    names = list(common) + [n for cls in classes.values() for n in cls.model_fields if n not in common]
    seen = set()
    for name in names:
        if name in seen:
            continue
        seen.add(name)
        owners = [s for s, cls in classes.items() if name in cls.model_fields]
        info = common.get(name) or classes[owners[0]].model_fields[name]
        defaults = {s: _default(classes[s].model_fields[name]) for s in owners}
        if name in common and len(set(defaults.values()) | {_default(common[name])}) > 1:
            default = ", ".join(f"{s}: {d}" for s, d in defaults.items())
        else:
            default = _default(info)
        where = "all" if name in common else ", ".join(owners)
        typ = type_name(info.annotation, info.metadata)
        variable = (prefix + name).upper()
        lines.append(f"| `{variable}` | {typ} | {default} | {where} | {_cell(descriptions.get(name, ''))} |")

    fields = {(prefix + n).upper() for n in seen}
    extra = {n: m for n, m in cli_variables().items() if n not in fields}
    if extra:
        lines += ["", "Read by the `fangkong` command itself:", "",
                  "| variable | what |", "|---|---|"]
        for name, what in sorted(extra.items()):
            service = next((s for s in SERVICE_NAMES if name == f"FANGKONG_{s.upper()}_DATABASE_URL"), None)
            if service:
                what = (f"the {service} service's own database for `fangkong migrate` and `fangkong up` "
                        "(instead of the default)")
            lines.append(f"| `{name}` | {_cell(what)} |")
    return "\n".join(lines)


# --- the README ---------------------------------------------------------------------------------------------


class MarkersMissing(ValueError):
    pass


def render(readme: str, blocks: dict[str, str]) -> str:
    """``readme`` with the text between each block's markers replaced (nothing else changes)."""
    for name, body in blocks.items():
        begin, end = f"<!-- BEGIN GENERATED: {name} -->", f"<!-- END GENERATED: {name} -->"
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
        if len(pattern.findall(readme)) != 1:
            raise MarkersMissing(f"README needs exactly one {begin} … {end} pair")
        block = f"{begin}\n{body.strip()}\n{end}"
        readme = pattern.sub(lambda _m, block=block: block, readme)  # a function: no backslash escapes in block
    return readme


def generate() -> dict[str, str]:
    return {"events": events_markdown(), "settings": settings_markdown()}


MESSAGES = {
    "zh": {
        "stale": "{path} 的生成内容已过期：运行 python -m fangkong_cli.docs 重新生成。",
        "fresh": "{path} 的生成内容是最新的。",
        "written": "已更新 {path}。",
        "unchanged": "{path} 无需更新。",
        "markers": "{path}：{error}",
        "missing": "找不到 {path}。",
    },
    "en": {
        "stale": "{path} is stale: run python -m fangkong_cli.docs to regenerate it.",
        "fresh": "{path} is up to date.",
        "written": "{path} updated.",
        "unchanged": "{path} unchanged.",
        "markers": "{path}: {error}",
        "missing": "{path} not found.",
    },
}

app = typer.Typer(add_completion=False)


@app.command()
def main(
    check: Annotated[bool, typer.Option("--check", help="exit 1 when the README is stale (write nothing)")] = False,
    readme: Annotated[Path, typer.Option("--readme", help="the README to update")] = README,
    lang: Annotated[str, typer.Option("--lang", help="zh (default) or en")] = "zh",
) -> None:
    """Regenerate the README's event catalogue and settings reference."""
    if lang not in MESSAGES:
        raise typer.BadParameter(f"choose from {sorted(MESSAGES)}", param_hint="--lang")
    text = MESSAGES[lang]
    if not readme.is_file():
        typer.echo(text["missing"].format(path=readme), err=True)
        raise typer.Exit(2)
    current = readme.read_text(encoding="utf-8")
    try:
        wanted = render(current, generate())
    except MarkersMissing as exc:
        typer.echo(text["markers"].format(path=readme, error=exc), err=True)
        raise typer.Exit(2) from exc
    if check:
        if wanted != current:
            typer.echo(text["stale"].format(path=readme), err=True)
            raise typer.Exit(1)
        typer.echo(text["fresh"].format(path=readme))
        return
    if wanted != current:
        readme.write_text(wanted, encoding="utf-8")
        typer.echo(text["written"].format(path=readme))
    else:
        typer.echo(text["unchanged"].format(path=readme))


if __name__ == "__main__":
    app(prog_name=f"{Path(sys.executable).name} -m fangkong_cli.docs")
