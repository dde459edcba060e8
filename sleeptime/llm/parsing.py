"""Turning free-form model output into structured artifacts."""

from __future__ import annotations

import json
import re

_LIST_ITEM = re.compile(r"^\s*(?:[-*•]|\(?\d{1,3}[.):]|Q\d{1,3}[.:)]?|Question\s*\d*[.:])\s*")
_JSON_ARRAY = re.compile(r"\[.*\]", re.DOTALL)


def _clean(q: str) -> str:
    q = q.strip().strip("*_#> ").strip()  # markdown emphasis, headings, quotes
    q = _LIST_ITEM.sub("", q).strip().strip("*_\"' ").strip()
    return re.sub(r"\s+", " ", q)


def parse_questions(text: str, limit: int) -> list[str]:
    """Questions from a numbered/bulleted list or a JSON array; [] if none found.

    Only lines that end in '?' count, so prose around the list is ignored. Case-
    insensitive duplicates are dropped and at most ``limit`` are returned.
    """
    candidates: list[str] = []
    match = _JSON_ARRAY.search(text)
    if match:
        try:
            data = json.loads(match.group(0))
        except ValueError:
            data = None
        if isinstance(data, list):
            for item in data:
                if isinstance(item, dict):
                    item = item.get("question", "")
                if isinstance(item, str):
                    candidates.append(item)
    if not candidates:
        for line in text.splitlines():
            # a line may hold several questions: split after each '?'
            candidates.extend(part + "?" for part in line.split("?")[:-1])
    seen: set[str] = set()
    out: list[str] = []
    for raw in candidates:
        q = _clean(raw)
        if len(q) < 8 or not q.endswith("?") or not re.search(r"[A-Za-z]", q):
            continue
        key = q.lower()
        if key not in seen:
            seen.add(key)
            out.append(q)
        if len(out) >= limit:
            break
    return out
