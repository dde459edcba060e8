"""The documentation covers the public surface and says only what the code has.

- every ``sleeptime`` command and sub-command has a section in docs/cli.md that names
  each of its options, and the README's command overview names every command;
- every ``sleeptime ...`` command line shown in README.md or docs/*.md names a real
  command and only options that command takes;
- every public method, constructor parameter and attribute of ``SleepTime``, every
  field of the exported models and every name in ``sleeptime.__all__`` is in
  docs/api.md;
- every relative link and every repository path in the docs resolves to a file inside
  the repository.

The walks are over the live objects (the typer app, ``__all__``, the classes), so a
new command, option, field or method fails here until it is documented.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from pydantic import BaseModel

import sleeptime
from sleeptime import Settings, SleepTime
from sleeptime.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
CLI_DOC = ROOT / "docs" / "cli.md"
API_DOC = ROOT / "docs" / "api.md"

_FENCE = re.compile(r"^(```|~~~)(.*)$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")


# -- reading markdown ---------------------------------------------------------------------


def prose(text: str) -> str:
    """``text`` without its fenced code blocks (each fence line kept blank, so line
    numbers and paragraph breaks stay)."""
    out: list[str] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line.strip()):
            fenced = not fenced
            out.append("")
        else:
            out.append("" if fenced else line)
    return "\n".join(out)


def fenced_blocks(text: str) -> Iterator[tuple[str, str]]:
    """(language, body) of every fenced code block."""
    lang, fenced = "", False
    body: list[str] = []
    for line in text.splitlines():
        m = _FENCE.match(line.strip())
        if m and not fenced:
            lang, body, fenced = m.group(2).strip().lower(), [], True
        elif m and fenced:
            yield lang, "\n".join(body)
            fenced = False
        elif fenced:
            body.append(line)


def sections(path: Path, *, nested: bool) -> dict[str, str]:
    """Section text by the first code span of its heading (``## `sleeptime worker` ``
    -> ``sleeptime worker``). ``nested``: a section runs to the next heading of the
    same or a higher level (its sub-sections included), else to the next heading."""
    lines = prose(path.read_text(encoding="utf-8")).splitlines()
    heads = [
        (i, len(m.group(1)), m.group(2))
        for i, line in enumerate(lines)
        if (m := _HEADING.match(line))
    ]
    found: dict[str, str] = {}
    for n, (i, level, title) in enumerate(heads):
        span = re.search(r"`([^`]+)`", title)
        if span is None:
            continue
        end = len(lines)
        for j, other_level, _ in heads[n + 1 :]:
            if not nested or other_level <= level:
                end = j
                break
        found.setdefault(span.group(1).strip(), "\n".join(lines[i:end]))
    return found


# -- commands and options -------------------------------------------------------------------


def cli_tree() -> Any:
    return typer.main.get_command(app)


def commands(cmd: Any = None, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """("sleeptime", root), ("sleeptime ingest", ...), ("sleeptime bench run", ...) ..."""
    cmd = cli_tree() if cmd is None else cmd
    yield " ".join(("sleeptime", *path)), cmd
    for name, sub in sorted((getattr(cmd, "commands", None) or {}).items()):
        if not getattr(sub, "hidden", False):
            yield from commands(sub, (*path, name))


def long_options(cmd: Any) -> list[str]:
    """The name a user types for each option: its first long form (else its short one)."""
    names = []
    for param in cmd.params:
        if param.param_type_name != "option" or getattr(param, "hidden", False):
            continue
        long = [o for o in param.opts if o.startswith("--")]
        names.append(long[0] if long else param.opts[0])
    return names


def accepted_options(cmd: Any) -> set[str]:
    accepted = {"--help"}
    for param in cmd.params:
        if param.param_type_name == "option":
            accepted.update(param.opts, param.secondary_opts)
    return accepted


def test_the_walk_sees_the_commands() -> None:
    """Guards the tests below against a walk that finds nothing (an API change in typer)."""
    found = dict(commands())
    assert {"sleeptime worker", "sleeptime jobs retry", "sleeptime bench run"} <= set(found)
    assert "--burst" in long_options(found["sleeptime worker"])


def test_every_command_has_a_section_in_the_cli_reference() -> None:
    documented = sections(CLI_DOC, nested=False)
    missing = [path for path, _ in commands() if path not in documented]
    assert not missing, f"docs/cli.md has no '## `COMMAND`' section for: {', '.join(missing)}"


def test_every_option_is_documented_in_its_command_section() -> None:
    documented = sections(CLI_DOC, nested=False)
    missing = []
    for path, cmd in commands():
        text = documented.get(path, "")
        for option in long_options(cmd):
            if not re.search("`" + re.escape(option) + r"(?![\w-])", text):
                missing.append(f"{path} {option}")
    assert not missing, "options not documented in their docs/cli.md section: " + ", ".join(missing)


def test_the_readme_overview_names_every_command() -> None:
    block = README.read_text(encoding="utf-8").split("## Command line", 1)[1]
    block = block.split("\n## ", 1)[0]
    missing = [
        path
        for path, _ in commands()
        if path != "sleeptime" and not re.search(re.escape(path) + r"(?![\w-])", block)
    ]
    assert not missing, f"README's 'Command line' block lacks: {', '.join(missing)}"


_COMMAND = re.compile(r"(?:^|(?<=[\s`$(]))sleeptime[ \t]+([^\n]*)")
_OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def command_lines(text: str) -> Iterator[str]:
    """What follows ``sleeptime`` on each command line the document shows: in shell (or
    unlabelled) code blocks, and in inline code spans."""
    for lang, body in fenced_blocks(text):
        if lang not in ("", "bash", "sh", "shell", "console", "text"):
            continue
        joined = re.sub(r"\\\n\s*", " ", body)  # continuation lines
        for line in joined.splitlines():
            for m in _COMMAND.finditer(line):
                yield m.group(1)
    for span in re.findall(r"`([^`]+)`", prose(text)):
        span = " ".join(span.split())
        if span.startswith("sleeptime "):
            yield span.removeprefix("sleeptime ")


def check_command_line(rest: str) -> list[str]:
    """Problems with one command line: an unknown (sub-)command or option."""
    rest = re.split(r"\s#|\s\|\s|&&|;|\)", rest, maxsplit=1)[0]
    cmd, path, problems = cli_tree(), ["sleeptime"], []
    takes_value = False
    for token in rest.split():
        word = token.strip("[]").rstrip(",.:")
        if takes_value:  # the value of the option before, e.g. "--state dead"
            takes_value = False
            continue
        subs = getattr(cmd, "commands", None) or {}
        if subs and re.fullmatch(r"[a-z][a-z-]*(\|[a-z][a-z-]*)*", word):
            names = word.split("|")
            unknown = [n for n in names if n not in subs]
            if unknown:
                problems.append(f"{' '.join(path)} has no sub-command {'/'.join(unknown)}")
                return problems
            if len(names) > 1:  # an overview such as "db upgrade|current"
                return problems
            cmd = subs[word]
            path.append(word)
            continue
        for option in _OPTION.findall(word):
            if option not in accepted_options(cmd):
                problems.append(f"{' '.join(path)} has no option {option}")
        if re.fullmatch(r"--?[A-Za-z][\w-]*", word):
            param = next((p for p in cmd.params if word in p.opts), None)
            takes_value = param is not None and not getattr(param, "is_flag", False)
    return problems


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_command_lines_in_the_docs_name_real_commands_and_options(doc: Path) -> None:
    problems = [
        f"'sleeptime {line.strip()}': {problem}"
        for line in command_lines(doc.read_text(encoding="utf-8"))
        for problem in check_command_line(line)
    ]
    assert not problems, f"{doc.name}: " + "; ".join(problems)


def test_the_command_line_check_can_fail() -> None:
    assert check_command_line("worker --burst --concurrency 2") == []
    assert check_command_line("jobs retry --all") == []
    assert check_command_line("jobs --state dead --json") == []
    assert check_command_line("sleep NS ID --k 2 --no-such") == [
        "sleeptime sleep has no option --no-such"
    ]
    assert check_command_line("jobs --all") == ["sleeptime jobs has no option --all"]
    assert check_command_line("bench run|nope") == ["sleeptime bench has no sub-command nope"]
    assert list(command_lines("```\nsleeptime ask NS ID q --json   # c\n```\n")) == [
        "ask NS ID q --json   # c"
    ]


# -- the Python API ------------------------------------------------------------------------


def own(cls: type) -> list[type]:
    """The classes of ``cls``'s MRO that belong to sleeptime (not pydantic, LangChain)."""
    return [c for c in cls.__mro__ if c.__module__.split(".")[0] == "sleeptime"]


def public_members(cls: type) -> list[str]:
    """Fields, properties, methods and class attributes a user of ``cls`` sees: those
    its sleeptime classes declare, minus overrides of a third-party base's API."""
    mine = own(cls)
    foreign = [c for c in cls.__mro__ if c not in mine and c is not object]
    names: list[str] = []
    if issubclass(cls, BaseModel):
        inherited = set().union(*(getattr(c, "model_fields", {}) for c in foreign))
        names += [n for n in cls.model_fields if n not in inherited]
    elif dataclasses.is_dataclass(cls):
        names += [f.name for f in dataclasses.fields(cls)]
    for c in mine:
        for name in vars(c):
            if name.startswith(("_", "model_")) or name in names:
                continue
            if any(hasattr(f, name) for f in foreign):
                continue
            names.append(name)
    return names


def exported_models() -> list[type]:
    """Exported pydantic models and dataclasses with fields of their own. ``Settings``
    is the README's settings table (tests/test_settings_doc.py)."""
    found = []
    for name in sleeptime.__all__:
        obj = getattr(sleeptime, name)
        if not inspect.isclass(obj) or obj is Settings:
            continue
        if issubclass(obj, BaseModel) or dataclasses.is_dataclass(obj):
            found.append(obj)
    return found


def row_or_heading(name: str) -> re.Pattern[str]:
    """A table row or heading whose first code span starts with ``name``."""
    return re.compile(r"^(?:\|\s*|#+\s+)`(?:st\.)?" + re.escape(name) + r"(?![\w])", re.M)


def test_the_api_walk_sees_the_models() -> None:
    names = {cls.__name__ for cls in exported_models()}
    assert {"Answer", "SleepReport", "Ledger", "Usage", "Budget"} <= names
    assert "stale" in public_members(sleeptime.Answer)
    assert "total_tokens" in public_members(sleeptime.Usage)
    assert "cost" in public_members(sleeptime.Ledger)
    # a LangChain model's inherited fields and overrides are LangChain's to document
    fake = public_members(sleeptime.FakeChatModel)
    assert "responses" in fake and "callbacks" not in fake and "get_num_tokens" not in fake


@pytest.mark.parametrize("cls", exported_models(), ids=lambda c: c.__name__)
def test_every_field_of_an_exported_model_is_in_its_api_table(cls: type) -> None:
    documented = sections(API_DOC, nested=True)
    assert cls.__name__ in documented, f"docs/api.md has no '### `{cls.__name__}`' section"
    text = documented[cls.__name__]
    missing = [m for m in public_members(cls) if not row_or_heading(m).search(text)]
    assert not missing, f"docs/api.md, `{cls.__name__}`: no row for {', '.join(missing)}"


def sleeptime_surface() -> dict[str, list[str]]:
    """What a user of SleepTime can reach: methods and properties, constructor
    parameters, the attributes an instance carries, and each method's optional
    parameters."""
    # the facade's own and its parts' (sleeptime/facade/, mixed in), in MRO order
    methods = list(
        dict.fromkeys(
            n for cls in SleepTime.__mro__[:-1] for n in vars(cls) if not n.startswith("_")
        )
    )
    init = [p for p in inspect.signature(SleepTime.__init__).parameters if p != "self"]
    st = SleepTime(
        model="fake", database_url="sqlite:///:memory:", settings=Settings(redis_url=None)
    )
    try:
        attributes = [n for n in vars(st) if not n.startswith("_")]
    finally:
        st.close()
    optional = sorted(
        {
            p.name
            for n in methods
            if callable(member := getattr(SleepTime, n))
            for p in inspect.signature(member).parameters.values()
            if p.default is not inspect.Parameter.empty
        }
    )
    return {"methods": methods, "init": init, "attributes": attributes, "optional": optional}


def test_every_public_member_of_sleeptime_is_in_the_api_reference() -> None:
    surface = sleeptime_surface()
    assert {"sleep", "ask", "gateway", "ingest", "delete"} <= set(surface["methods"])
    assert {"settings", "store"} <= set(surface["attributes"])
    assert "progress" in surface["optional"]
    text = sections(API_DOC, nested=True).get("SleepTime", "")
    assert text, "docs/api.md has no '## `SleepTime`' section"
    rows = surface["methods"] + surface["init"] + surface["attributes"]
    missing = [n for n in rows if not row_or_heading(n).search(text)]
    assert not missing, f"docs/api.md, `SleepTime`: no row for {', '.join(missing)}"
    unnamed = [
        p for p in surface["optional"] if not re.search(r"`[^`\n]*\b" + re.escape(p) + r"\b", text)
    ]
    assert not unnamed, f"docs/api.md, `SleepTime`: parameters never named: {', '.join(unnamed)}"


def test_every_exported_name_is_in_the_api_reference() -> None:
    text = API_DOC.read_text(encoding="utf-8")
    missing = [n for n in sleeptime.__all__ if not re.search("`" + re.escape(n) + r"\b", text)]
    assert not missing, f"docs/api.md never names: {', '.join(missing)}"


def test_the_readme_links_the_references() -> None:
    text = README.read_text(encoding="utf-8")
    assert "](docs/api.md)" in text and "](docs/cli.md)" in text


# -- links and paths stay inside the repository -----------------------------------------------

_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
#: The repository's top-level folders: a path that starts with one names a repository file.
_TOP_DIRS = ("docs/", "examples/", "scripts/", "sleeptime/", "tests/", "workers/")


def links(text: str) -> list[str]:
    body = prose(text)
    return _LINK.findall(body) + _REF_LINK.findall(body)


def inside(doc: Path, target: str) -> str | None:
    """Why a relative ``target`` of ``doc`` is not a file or folder of the repository."""
    path = target.split("#", 1)[0].split("?", 1)[0]
    if not path:
        return None  # an anchor in the same page
    resolved = (doc.parent / path).resolve()
    if not resolved.is_relative_to(ROOT):
        return "outside the repository"
    if not resolved.exists():
        return "no such file"
    return None


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve_inside_the_repository(doc: Path) -> None:
    bad = []
    for target in links(doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:
            continue
        why = inside(doc, target)
        if why:
            bad.append(f"{target} ({why})")
    assert not bad, f"{doc.name}: " + ", ".join(bad)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_paths_named_in_the_docs_are_in_the_repository(doc: Path) -> None:
    """A repository path in code spans or prose (``docs/workers.md``, ``sleeptime/redact.py``)
    must exist, and nothing may point above the repository (``../shared/...``)."""
    text = doc.read_text(encoding="utf-8")
    assert "../shared" not in text, f"{doc.name} refers to ../shared, outside the repository"
    bad = []
    for m in re.finditer(r"(?<![\w./-])((?:\.\./)+[\w./-]+|[\w.-]+/[\w./-]*)", prose(text)):
        path = m.group(1).rstrip(".")
        if path.startswith("../"):
            why = inside(doc, path)
        elif path.startswith(_TOP_DIRS):
            why = None if (ROOT / path).exists() else "no such file"
        else:
            continue
        if why:
            bad.append(f"{path} ({why})")
    assert not bad, f"{doc.name}: " + ", ".join(sorted(set(bad)))


def test_the_link_checks_can_fail(tmp_path: Path) -> None:
    doc = ROOT / "docs" / "x.md"
    assert inside(doc, "../shared/notes/local-models.md") == "no such file"
    assert inside(doc, "../../outside.md") == "outside the repository"
    assert inside(doc, "workers.md#guarantees") is None
    assert links("see [a](../b.md) and [c](https://x.org)\n\n[d]: e.md\n") == [
        "../b.md",
        "https://x.org",
        "e.md",
    ]
