"""Sleep time of a benchmark run: the rethinks of each protocol through the library,
the oracle questions, and ``sleep.jsonl``'s rows."""

from __future__ import annotations

import time
from typing import Any

from sleeptime import prompts
from sleeptime.bench.datasets import Item
from sleeptime.bench.protocol import (
    call_meta,
)
from sleeptime.bench.run_files import (
    is_aime,
)
from sleeptime.bench.run_state import RunState
from sleeptime.errors import ModelOutputError
from sleeptime.models import Usage
from sleeptime.paper import RethinkOptions, rethink_key
from sleeptime.store.kinds import Kind
from sleeptime.store.sql import QUESTIONS

#: The library's warning when every rethink loop wrote nothing and c' was learned by
#: one notes call (RethinkOptions.fallback).
_FELL_BACK = "rethink: the loops wrote nothing; learned c'"


class SleepSteps(RunState):
    """A run's sleep-time steps."""

    def _rethink(self, item: Item, k: int, *, paper: bool) -> RethinkOptions:
        """The options of the library's ``rethink_tools`` sleep strategy for this run:
        paper, the paper's task, no budget, the k blocks kept apart (one per test agent)
        and an empty block left empty; product, our learn task with a token budget per
        loop, the k blocks merged, and one notes call when every loop wrote nothing."""
        return RethinkOptions(
            prompts=self.paper,
            max_rounds=self.cfg.rethink_rounds,
            memory_chars=self.cfg.memory_chars,
            mode=self.cfg.rethink_mode,
            aime=paper and is_aime(item),
            task=None if paper else prompts.LEARN_SYSTEM,
            token_budget=None if paper else self.cfg.sleep_budget,
            temperature=self.cfg.sleep_temp(k, self.library_temperature),
            merge=not paper,
            fallback=not paper,
        )

    def _rethinks(self, ns: str, item: Item, version: int, k: int) -> list[dict[str, Any]]:
        """Each loop's block and record (stop, calls, rewrites), as the library stored
        them (draft artifacts of the ``rethink_tools`` strategy)."""
        out: list[dict[str, Any]] = []
        for i in range(k):
            art = self.st.store.get_artifact(ns, item.id, version, Kind.DRAFT, rethink_key(i))
            if art is not None:
                out.append({"memory": art.get("text", ""), **(art.get("rethink") or {})})
        return out

    def _paper_sleep(self, item: Item, k: int) -> None:
        """k sleep agents, each rewriting its own memory block; no merge. The library
        runs them: ``SleepTime.sleep(strategy="rethink_tools")``, no predicted questions."""
        start = time.perf_counter()
        ns = f"paper-k{k}"
        st = self.st
        st.ingest(ns, item.id, item.context)
        version = st.store.current_version(ns, item.id)
        assert version is not None
        with self._tag(item.id, f"sleep-k{k}"):
            report = st.sleep(
                ns,
                item.id,
                k=k,
                n_questions=0,
                strategy="rethink_tools",
                rethink=self._rethink(item, k, paper=True),
            )
        self._sleep_record(
            item,
            k,
            usage=self._sleep_usage(ns, item),
            predicted=0,
            seconds=time.perf_counter() - start,
            error=None,
            rethinks=self._rethinks(ns, item, version, k),
            warnings=report.warnings,
        )

    def _sleep_usage(self, ns: str, item: Item) -> Usage:
        used = self.st.ledger(ns, item.id).sleep  # every sleep-time call on this context
        return Usage(
            prompt_tokens=used.prompt_tokens,
            completion_tokens=used.completion_tokens,
            calls=used.calls,
        )

    def _sleep(self, item: Item, ns: str, k: int) -> None:
        """Product protocol: ``SleepTime.sleep`` with the ``rethink_tools`` strategy:
        k budgeted rethink loops (merged when k > 1) give c'; the library then predicts
        and answers questions."""
        start = time.perf_counter()
        error = None
        warnings: list[str] = []
        st = self.st
        version = st.store.current_version(ns, item.id)
        assert version is not None
        with self._tag(item.id, f"sleep-k{k}"):
            if self.cfg.oracle_questions:
                self._oracle_questions(item, ns, version)
            try:
                with call_meta(max_tokens=self.settings.sleep_max_tokens, temperature=None):
                    report = st.sleep(
                        ns,
                        item.id,
                        k=k,
                        n_questions=self.cfg.questions,
                        strategy="rethink_tools",
                        rethink=self._rethink(item, k, paper=False),
                    )
                predicted, warnings = len(report.qas), report.warnings
                if any(w.startswith(_FELL_BACK) for w in report.warnings):
                    # nothing usable came out of the loops: the library learned c' itself
                    # (one capped call); the sleep record says so
                    error = "rethink loops wrote nothing; the library's learn step ran"
            except ModelOutputError as exc:
                # The model could not produce parseable output: c' is kept (it is persisted
                # before prediction), the questions are not; record it and answer anyway.
                error, predicted = str(exc), 0
        self._sleep_record(
            item,
            k,
            usage=self._sleep_usage(ns, item),
            predicted=predicted,
            seconds=time.perf_counter() - start,
            error=error,
            rethinks=self._rethinks(ns, item, version, k),
            warnings=warnings,
        )

    def _oracle_questions(self, item: Item, ns: str, version: int) -> None:
        """Have sleep time answer the dataset's own (non-near-miss) questions: stored as
        the predicted-question artifact, so the library's predict step keeps them."""
        base = [q.question for q in item.queries if "near_miss_of" not in q.meta]
        questions = base[: self.cfg.questions]
        if questions:
            self.st.store.put_artifact(
                ns,
                item.id,
                version,
                QUESTIONS,
                "0",
                {"questions": questions, "raw": "oracle: the dataset's own questions"},
                model="oracle",
            )

    def _sleep_record(
        self,
        item: Item,
        k: int,
        *,
        usage: Usage,
        predicted: int,
        seconds: float,
        error: str | None,
        rethinks: list[dict[str, Any]],
        warnings: list[str] | None = None,
    ) -> None:
        record = {
            "item": item.id,
            "k": k,
            "protocol": self.cfg.protocol,
            "sleep_prompt_tokens": usage.prompt_tokens,
            "sleep_completion_tokens": usage.completion_tokens,
            "calls": usage.calls,
            "predicted": predicted,
            "rethinks": rethinks,
            "seconds": round(seconds, 3),
            "error": error,
        }
        if warnings:  # what the library's sleep step degraded (a loop at its round cap, ...)
            record["warnings"] = list(warnings)
        self.sleeps.append(record)
        self.sleep_records[(item.id, k)] = record
        self.slept.add((item.id, k))
