"""Benchmark datasets: one context, several queries with gold answers.

Every dataset is a list of :class:`Item` (a context and its queries). Three sources:

- ``stateful-gsm8k``: GSM8K test problems (labels from GSM8K-Platinum) split as in the
  Sleep-time Compute paper: the last sentence is the query, the rest the context.
  Prepared by ``scripts/prepare_gsm8k.py`` and shipped in the package.
- ``multi-query``: our seeded generator of stateful word problems with 3-10 questions
  per context (:mod:`sleeptime.bench.generator`).
- a path to a JSONL file, one context per line (see :func:`load_jsonl`), or a local copy
  of the paper's published Stateful GSM-Symbolic (P1/P2) or Stateful AIME files
  (recognised by their fields; :func:`load_stateful`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from sleeptime.bench.items import Item, Query
from sleeptime.errors import InvalidInput

GSM8K_FILE = "data/stateful_gsm8k.jsonl"
DATASET_NAMES = (
    "stateful-gsm8k",
    "multi-query",
    "stateful-gsm-symbolic:PATH",
    "stateful-aime:PATH",
)
#: The paper's published formats: (context field, question field) per format name.
STATEFUL_FORMATS = {
    "stateful-gsm-symbolic": ("stateful_gsm_symbolic_context", "stateful_gsm_symbolic_question"),
    "stateful-aime": ("stateful_aime_context", "stateful_aime_question"),
}
_ALIASES = {
    "gsm8k": "stateful-gsm8k",
    "stateful_gsm8k": "stateful-gsm8k",
    "multiquery": "multi-query",
    "multi_query": "multi-query",
}


# -- sentence splitting ------------------------------------------------------------------

#: Abbreviations whose period never ends a sentence ("Mr. Smith", "vs. Bob").
_TITLES = frozenset(
    "mr mrs ms dr prof st jr sr mt gen capt lt sgt col rev hon vs messrs mme mlle no nos "
    "fig approx dept est".split()
)
#: Words that start sentences: after "Farm Y." or "6 a.m." they signal a boundary.
_STARTERS = frozenset(
    "a an the he she it they we i you his her its their our my your this that these those "
    "there then if how what when where which who why each every after before on in at "
    "one two three four five six seven eight nine ten all some she's he's it's they're "
    "calculate find determine".split()
)
#: Nouns that take a letter label ("Box A.", "Farm Y.", "team B."): the letter is no initial.
_LABELLED = frozenset(
    "box farm type exit district candidate team plan option section grade group room building "
    "part class level road route block gate zone station store company brand car bus train "
    "line model size vitamin school question item product field court floor wing apartment "
    "unit house bag bin jar tank pump machine player letter row column".split()
)
_END = re.compile(r"[.!?]+[\"'”’)\]]*")
_SPACE = re.compile(r"\s+")
_MULTI_DOT = re.compile(r"(?:[A-Za-z]\.){2,}$")
_OPENERS = "\"'“‘(["


def split_sentences(text: str) -> list[str]:
    """Split English prose into sentences without breaking numbers or abbreviations.

    A boundary is ``.``/``!``/``?`` (plus closing quotes or brackets), then whitespace,
    then something that can start a sentence (a capital, a digit, ``$``, an opening
    quote or bracket). So "$3.50", "2.5 hours" and "1,000.75" never split (no space
    after the period), "Mr. Smith" and "e.g. Bob" never split (known abbreviations),
    "at 6 a.m. She left" splits but "at 6 a.m. and" does not, and an initial
    ("J. K. Rowling") never splits, while a label ("Juice Box A. Juice Box C", "exit C. She")
    splits before a capital.
    A blank line always ends a sentence.
    """
    sentences: list[str] = []
    start = 0
    for m in _END.finditer(text):
        ws = _SPACE.match(text, m.end())
        if ws is None:
            continue
        nxt = text[ws.end() : ws.end() + 40]
        if not nxt:
            continue
        if "\n\n" not in ws.group(0):
            if not _can_start(nxt):
                continue
            punct = m.group(0).rstrip("\"'”’)]")
            if punct == "." and _abbreviation(text[start : m.start() + 1], nxt):
                continue
        piece = text[start : m.end()].strip()
        if piece:
            sentences.append(piece)
        start = ws.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def _can_start(nxt: str) -> bool:
    c = nxt[0]
    if c in _OPENERS:
        c = nxt[1:2] or " "
    return c.isupper() or c.isdigit() or c in "$£€"


def _next_word(nxt: str) -> str:
    m = re.match(r"[\"'“‘(\[]*([A-Za-z']+)", nxt)
    return m.group(1).lower() if m else ""


def _abbreviation(before: str, nxt: str) -> bool:
    """True when the period that ends ``before`` belongs to an abbreviation."""
    words = before.split()
    word = words[-1].lstrip(_OPENERS) if words else ""
    low = word.lower()
    starter = _next_word(nxt) in _STARTERS
    if low in ("a.m.", "p.m."):
        return not (nxt[0].isupper() and nxt[0].isalpha())  # "6 a.m. She" ends a sentence
    if low[:-1] in _TITLES:
        return True
    if re.fullmatch(r"[A-Z]\.", word):  # an initial ("J. K. Rowling") or a label ("Box A.")
        prev = words[-2].lstrip(_OPENERS) if len(words) > 1 else ""
        name_before = not prev or (prev[:1].isupper() and prev.lower().rstrip(",") not in _LABELLED)
        return name_before and not starter
    if _MULTI_DOT.search(word):  # "U.S.", "e.g.", "i.e."
        return low in ("e.g.", "i.e.") or not starter
    return False


def split_problem(text: str) -> tuple[str, str]:
    """(context, query) the way the paper splits a word problem: the query is the last
    sentence; a trailing parenthetical note such as "(Round to the nearest integer.)"
    stays with the question it qualifies. Raises ``InvalidInput`` for a single sentence
    (there would be no context to think about)."""
    sentences = split_sentences(text)
    n_query = 1
    while n_query < len(sentences) and sentences[-n_query].startswith("("):
        n_query += 1
    if len(sentences) <= n_query:
        raise InvalidInput(
            f"cannot split a single-sentence problem into context and query: {text[:80]!r}"
        )
    return " ".join(sentences[:-n_query]), " ".join(sentences[-n_query:])


# -- loading -------------------------------------------------------------------------------


def load_dataset(spec: str, *, limit: int | None = None, keep_apart: bool = False) -> list[Item]:
    """Items of a named dataset or a JSONL path.

    ``spec`` is ``stateful-gsm8k``, ``multi-query`` (optionally with generator options,
    ``multi-query:n=50,seed=1,difficulty=2,queries=3-10,families=shopping+travel``)
    or the path of a JSONL file. ``keep_apart``: Stateful GSM-Symbolic / AIME records
    that share a context stay one item each (as the paper runs them) instead of one
    item with several queries.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidInput("dataset must be a name (stateful-gsm8k, multi-query) or a JSONL path")
    spec = spec.strip()
    name, _, options = spec.partition(":")
    name = _ALIASES.get(name.lower(), name.lower())
    if name == "stateful-gsm8k" and not options:
        items = load_stateful_gsm8k()
    elif name in STATEFUL_FORMATS:
        if not options:
            raise InvalidInput(
                f"{name} is read from a local file: --dataset {name}:path/to/file.jsonl"
            )
        items = load_stateful(options, expect=name, keep_apart=keep_apart)
    elif name == "multi-query":
        from sleeptime.bench.generator import generate_from_options

        items = generate_from_options(options, limit=limit)
    elif Path(spec).exists():
        items = load_jsonl(spec, keep_apart=keep_apart)
    else:
        raise InvalidInput(
            f"unknown dataset {spec!r}: use one of {', '.join(DATASET_NAMES)} or the path of a "
            "JSONL file"
        )
    if limit is not None:
        if limit < 1:
            raise InvalidInput(f"--limit must be >= 1 (got {limit})")
        items = items[:limit]
    return items


def load_stateful_gsm8k() -> list[Item]:
    """The shipped Stateful GSM8K file (GSM8K test, GSM8K-Platinum labels; MIT)."""
    res = resources.files("sleeptime").joinpath(GSM8K_FILE)
    if not res.is_file():
        raise InvalidInput(
            f"sleeptime/{GSM8K_FILE} is missing from this install: rebuild it with "
            "scripts/prepare_gsm8k.py"
        )
    return parse_jsonl(res.read_text("utf-8").splitlines(), source=f"sleeptime/{GSM8K_FILE}")


def load_jsonl(path: str | Path, *, keep_apart: bool = False) -> list[Item]:
    """Read a user dataset: one JSON object per line,
    ``{"id": "...", "context": "...", "queries": [{"question": "...", "answer": "42"}]}``.
    Answers may be numbers or short text; blank lines and ``#`` comments are skipped."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"dataset file not found: {p}")
    lines = _read_lines(p)
    if stateful_format(lines) is not None:
        return parse_stateful(lines, source=str(p), keep_apart=keep_apart)
    return parse_jsonl(lines, source=str(p))


def _read_lines(p: Path) -> list[str]:
    try:
        return p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{p} is not UTF-8 text: {exc.reason}") from exc


# -- the paper's published formats ----------------------------------------------------------


def stateful_format(lines: list[str]) -> str | None:
    """``stateful-gsm-symbolic`` / ``stateful-aime`` when the first record has that
    format's fields, else None."""
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            return None
        if not isinstance(obj, dict):
            return None
        for name, (ctx_field, _q) in STATEFUL_FORMATS.items():
            if ctx_field in obj:
                return name
        return None
    return None


def load_stateful(
    path: str | Path, *, expect: str | None = None, keep_apart: bool = False
) -> list[Item]:
    """Read a local copy of Stateful GSM-Symbolic (P1 or P2) or Stateful AIME (2024/2025).

    Stateful GSM-Symbolic records hold ``stateful_gsm_symbolic_context``,
    ``stateful_gsm_symbolic_question`` and the GSM-style ``answer`` (a solution ending in
    ``#### N``; the gold is N with ``$`` and ``,`` removed, as the paper's evaluator
    reads it); ``id`` and ``instance`` name the item when present. Stateful AIME records
    hold ``stateful_aime_context``, ``stateful_aime_question`` and an integer ``answer``.
    Records that share a context become one item with several queries, unless
    ``keep_apart`` (one item per record).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise InvalidInput(f"dataset file not found: {p}")
    lines = _read_lines(p)
    found = stateful_format(lines)
    if expect is not None and found != expect:
        ctx_field = STATEFUL_FORMATS[expect][0]
        raise InvalidInput(f"{p}: not {expect} data (its first record has no {ctx_field!r})")
    return parse_stateful(lines, source=str(p), keep_apart=keep_apart)


def _records(lines: list[str], source: str) -> Iterator[tuple[int, str, Any]]:
    """(line number, "source:line", parsed value) of each JSON line; blank lines and
    ``#`` comments skipped; bad JSON is one clear error naming its line."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{source}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(
                f"{where}: not valid JSON ({exc.msg} at column {exc.colno})"
            ) from exc
        yield lineno, where, obj


def parse_stateful(
    lines: list[str], *, source: str = "<data>", keep_apart: bool = False
) -> list[Item]:
    fmt = stateful_format(lines)
    if fmt is None:
        raise InvalidInput(f"{source}: no Stateful GSM-Symbolic or Stateful AIME records")
    ctx_field, q_field = STATEFUL_FORMATS[fmt]
    groups: dict[tuple[str, int], list[tuple[str, Query, dict[str, Any]]]] = {}
    for lineno, where, obj in _records(lines, source):
        if not isinstance(obj, dict):
            raise InvalidInput(f"{where}: expected a JSON object, got {type(obj).__name__}")
        context, question = obj.get(ctx_field), obj.get(q_field)
        for fname, value in ((ctx_field, context), (q_field, question)):
            if not isinstance(value, str) or not value.strip():
                raise InvalidInput(f"{where}: {fname!r} must be a non-empty string")
        assert isinstance(context, str) and isinstance(question, str)
        answer = obj.get("answer")
        if isinstance(answer, bool) or not isinstance(answer, str | int | float):
            raise InvalidInput(f"{where}: 'answer' must be a number or a string")
        gold = _stateful_gold(fmt, answer, where)
        ident = (
            "-".join(
                str(obj[key]) for key in ("id", "instance") if isinstance(obj.get(key), str | int)
            )
            or f"line{lineno}"
        )
        qmeta: dict[str, Any] = {"source_id": ident}
        if fmt == "stateful-gsm-symbolic" and isinstance(answer, str):
            qmeta["solution"] = answer
        key = (context.strip(), lineno if keep_apart else 0)
        groups.setdefault(key, []).append(
            (ident, Query(question=question.strip(), answer=gold, meta=qmeta), obj)
        )
    items: list[Item] = []
    seen: set[str] = set()
    prefix = "gsmsym" if fmt == "stateful-gsm-symbolic" else "aime"
    for (context, _line), entries in groups.items():
        base = f"{prefix}-{entries[0][0]}"
        item_id, n = base, 1
        while item_id in seen:
            n += 1
            item_id = f"{base}-{n}"
        seen.add(item_id)
        items.append(
            Item(
                id=item_id[:256],
                context=context,
                queries=tuple(q for _i, q, _o in entries),
                meta={"format": fmt, "source": source},
            )
        )
    return items


def _stateful_gold(fmt: str, answer: str | int | float, where: str) -> str:
    """The gold as the paper's evaluators read it."""
    if fmt == "stateful-aime":
        try:
            return str(int(str(answer).strip()))
        except ValueError as exc:
            raise InvalidInput(f"{where}: a Stateful AIME 'answer' is an integer") from exc
    text = str(answer)
    if "####" in text:
        text = re.sub(r"(?s).*#### ?", "", text)
    gold = text.replace("$", "").replace(",", "").strip().strip(".").strip()
    if not gold:
        raise InvalidInput(f"{where}: 'answer' has no final answer after '####'")
    return gold


def parse_jsonl(lines: list[str], *, source: str = "<data>") -> list[Item]:
    items: list[Item] = []
    seen: dict[str, int] = {}
    for lineno, where, obj in _records(lines, source):
        item = _item_from_json(obj, where)
        if item.id in seen:
            raise InvalidInput(f"{where}: duplicate id {item.id!r} (first on line {seen[item.id]})")
        seen[item.id] = lineno
        items.append(item)
    if not items:
        raise InvalidInput(f"{source}: no items (expected one JSON object per line)")
    return items


def _item_from_json(obj: Any, where: str) -> Item:
    if not isinstance(obj, dict):
        raise InvalidInput(f"{where}: expected a JSON object, got {type(obj).__name__}")
    unknown = set(obj) - {"id", "context", "queries", "meta"}
    if unknown:
        raise InvalidInput(
            f"{where}: unknown field(s) {sorted(unknown)}; allowed: id, context, queries, meta"
        )
    item_id = obj.get("id")
    if isinstance(item_id, int) and not isinstance(item_id, bool):
        item_id = str(item_id)
    if not isinstance(item_id, str) or not item_id.strip() or len(item_id) > 256:
        raise InvalidInput(f"{where}: 'id' must be a non-empty string of at most 256 characters")
    if re.search(r"[\x00-\x1f\x7f]", item_id):
        raise InvalidInput(f"{where}: 'id' {item_id!r} contains control characters")
    context = obj.get("context")
    if not isinstance(context, str) or not context.strip():
        raise InvalidInput(f"{where}: 'context' must be a non-empty string")
    queries = obj.get("queries")
    if not isinstance(queries, list) or not queries:
        raise InvalidInput(f"{where}: 'queries' must be a non-empty list of {{question, answer}}")
    parsed = []
    for i, q in enumerate(queries):
        qwhere = f"{where}: queries[{i}]"
        if not isinstance(q, dict):
            raise InvalidInput(f"{qwhere} must be an object with 'question' and 'answer'")
        question, answer = q.get("question"), q.get("answer")
        if not isinstance(question, str) or not question.strip():
            raise InvalidInput(f"{qwhere}: 'question' must be a non-empty string")
        if isinstance(answer, bool) or not isinstance(answer, str | int | float):
            raise InvalidInput(f"{qwhere}: 'answer' must be a number or a short string")
        answer = str(answer).strip()
        if not answer:
            raise InvalidInput(f"{qwhere}: 'answer' is empty")
        meta = q.get("meta") or {}
        if not isinstance(meta, dict):
            raise InvalidInput(f"{qwhere}: 'meta' must be an object")
        parsed.append(Query(question=question.strip(), answer=answer, meta=meta))
    meta = obj.get("meta") or {}
    if not isinstance(meta, dict):
        raise InvalidInput(f"{where}: 'meta' must be an object")
    return Item(id=item_id.strip(), context=context.strip(), queries=tuple(parsed), meta=meta)


def write_jsonl(items: list[Item], path: str | Path) -> None:
    """Write items in the user format (what :func:`load_jsonl` reads back)."""
    with open(path, "w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item.to_json(), ensure_ascii=False) + "\n")
