"""Test time of a benchmark run: each arm's answers (the library's ``ask``, the paper's
paired test agents, the parallel-sampling baseline), scored and recorded; the majority
vote, an answer that failed, a sample's seed."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from sleeptime import prompts
from sleeptime.bench.datasets import Item
from sleeptime.bench.paper_prompts import (
    EMPTY_MEMORY,
    answer_messages,
)
from sleeptime.bench.protocol import (
    call,
    call_meta,
)
from sleeptime.bench.run_state import RunState
from sleeptime.bench.support import answer_prompt, support_coverage
from sleeptime.errors import SleepTimeError
from sleeptime.llm.budget import call_max_tokens
from sleeptime.models import Answer, Budget


def _as_float(value: Any) -> float | None:
    for attr in ("logprob", "score", "value", "mean_logprob"):
        if hasattr(value, attr):
            value = getattr(value, attr)
            break
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def vote(samples: list[dict[str, Any]]) -> tuple[str | None, bool]:
    """Majority vote over scored answers (``key``, ``correct``): the most frequent key,
    ties going to the answer seen first; correct when an answer with that key is."""
    keys = [s["key"] for s in samples if s.get("key") is not None]
    if not keys:
        return None, False
    counts = Counter(keys)
    top = max(counts.values())
    majority = next(k for k in keys if counts[k] == top)
    return majority, any(s["correct"] for s in samples if s.get("key") == majority)


def _error_fields(exc: BaseException) -> dict[str, Any]:
    """The fields of an answer whose model call failed."""
    return {
        "response": "",
        "extracted": None,
        "correct": False,
        "source": "error",
        "error": f"{type(exc).__name__}: {exc}",
        "test_prompt_tokens": 0,
        "test_completion_tokens": 0,
        "latency_ms": 0.0,
    }


def _sample_seed(gateway: Any, i: int) -> int | None:
    """Sample i's seed, where the backend needs one.

    The local llama.cpp model samples with a fixed seed, so K calls at temperature > 0
    would return K identical samples; a seed per sample makes them independent and
    reproducible. Remote backends already differ per call (and some reject ``seed``).
    """
    from sleeptime.llm.local import LocalChatModel

    return 1000 + i if isinstance(gateway.model, LocalChatModel) else None


def _failed_sample(exc: BaseException) -> dict[str, Any]:
    """A sample (or a paired answer) whose model call failed: wrong, no tokens."""
    return {
        "text": "",
        "key": None,
        "correct": False,
        "error": f"{type(exc).__name__}: {exc}",
        "prompt_tokens": 0,
        "completion_tokens": 0,
    }


class AnswerSteps(RunState):
    """A run's test-time steps."""

    def _result(self, item: Item, qi: int, arm: str, **fields: Any) -> None:
        query = item.queries[qi]
        record = {
            "item": item.id,
            "q": qi,
            "arm": arm,
            "n_queries": len(item.queries),
            "ts": time.time(),
            **fields,
        }
        if "near_miss_of" in query.meta:
            base = int(query.meta["near_miss_of"])
            record["near_miss_of"] = base
            record["near_miss_category"] = query.meta.get("category")
            record["base_question"] = item.queries[base].question
        self.results.append(record)
        if record.get("source") != "error":
            self.done.add((item.id, qi, arm))
        with self._stats_lock:
            self.stats.new_results += 1
            self.stats.error_answers += record.get("source") == "error"

    def _gold(self, item: Item, qi: int) -> str:
        """The gold the run's scorer compares with (the paper's: the raw answer field)."""
        query = item.queries[qi]
        return self.scorer(item).gold(query.answer, query.meta)

    def _ask(self, item: Item, qi: int, ns: str, k: int, v: int, arm: str) -> None:
        question, gold = item.queries[qi].question, item.queries[qi].answer
        scorer = self.scorer(item)
        scoring_gold = self._gold(item, qi)
        fields: dict[str, Any]
        budget = Budget(verbosity=v)
        try:
            cap = call_max_tokens(self.st.gateway.model, budget)
            with call_meta(max_tokens=cap, temperature=None):
                ans = self.st.ask(ns, item.id, question, budget=budget)
            fields = {
                "response": ans.text,
                "extracted": scorer.key(ans.text),
                "correct": scorer.correct(ans.text, scoring_gold),
                "source": ans.source,
                "matched_question": ans.matched_question,
                "serve_reason": getattr(ans, "serve_reason", None),
                "test_prompt_tokens": ans.usage.prompt_tokens,
                "test_completion_tokens": ans.usage.completion_tokens,
                "max_tokens": cap,
                "latency_ms": round(ans.latency_ms, 2),
                **self._prompt_fields(item, qi, ns, ans),
            }
        except SleepTimeError as exc:
            # a failed call is an error, not a wrong answer: recorded (the call in
            # calls.jsonl), counted, redone by a re-run; the run fails at its end
            fields = _error_fields(exc)
        self._result(
            item, qi, arm, kind="sleep" if k else "test", k=k, verbosity=v, gold=gold, **fields
        )

    def _prompt_fields(self, item: Item, qi: int, ns: str, ans: Answer) -> dict[str, Any]:
        """What a library answer's prompt carried, against the cold prompt: the cold
        prompt's tokens (stored once per version), the passages it sent (character
        offsets into the context) and, when the query knows its supporting sentences,
        how many of them reached the prompt (:mod:`sleeptime.bench.coverage`)."""
        out: dict[str, Any] = {
            "cold_prompt_tokens": ans.cold_prompt_tokens,
            "passages": [[p.start, p.end] for p in ans.passages],
        }
        query = item.queries[qi]
        support = query.meta.get("support")
        if support:
            got = answer_prompt(self.st, ns, item.id, item.context, query.question, ans)
            if got is not None:
                cov = support_coverage(support, got.text, got.notes)
                out["support"] = {
                    "sentences": cov.sentences,
                    "reached": cov.reached,
                    "covered": cov.covered,
                    "whole_text": got.whole_text,
                }
        return out

    def _answer(
        self,
        item: Item,
        qi: int,
        v: int,
        *,
        memory: str,
        step: str,
        temperature: float | None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """One paper-protocol test-time call (no token cap), scored; a failed call gives
        a sample with its ``error`` (the call is in ``calls.jsonl``)."""
        query = item.queries[qi]
        scorer = self.scorer(item)
        messages = answer_messages(
            self.paper, v, context=item.context, question=query.question, memory=memory
        )
        try:
            res = call(
                self.st.gateway,
                messages,
                phase="test",
                step=step,
                max_tokens=None,
                temperature=temperature,
                seed=seed,
            )
        except SleepTimeError as exc:
            return _failed_sample(exc) | {"latency_ms": 0.0}
        return {
            "text": res.text,
            "key": scorer.key(res.text),
            "correct": scorer.correct(res.text, self._gold(item, qi)),
            "prompt_tokens": res.usage.prompt_tokens,
            "completion_tokens": res.usage.completion_tokens,
            "latency_ms": round(res.latency_ms, 2),
        }

    def _paper_ask(self, item: Item, qi: int, k: int, v: int, arm: str) -> None:
        """Test-only (empty memory) or k test agents, each reading its own sleep agent's
        block; scored by majority vote over the k answers (pass@k recorded too). Tokens
        are summed over the k pairs (``pairs`` holds each pair's)."""
        if k == 0:
            memories = [EMPTY_MEMORY]
        else:
            sleep = self.sleep_records[(item.id, k)]
            memories = [r.get("memory") or EMPTY_MEMORY for r in sleep["rethinks"]]
        temperature = self.cfg.test_temp()
        pairs = [
            self._answer(
                item, qi, v, memory=m, step=f"test-{i}" if k else "test", temperature=temperature
            )
            for i, m in enumerate(memories)
        ]
        majority, correct = vote(pairs)
        first = next((p for p in pairs if p["key"] == majority), pairs[0])
        failed = [p["error"] for p in pairs if p.get("error")]
        self._result(
            item,
            qi,
            arm,
            kind="sleep" if k else "test",
            k=k,
            verbosity=v,
            gold=item.queries[qi].answer,
            response=first["text"],
            extracted=None if failed else majority,
            correct=correct and not failed,
            pass_at_k=any(p["correct"] for p in pairs) and not failed,
            pairs=pairs if k > 1 else None,
            source="error" if failed else ("learned" if k else "cold"),
            **({"error": failed[0]} if failed else {}),
            test_prompt_tokens=sum(p["prompt_tokens"] for p in pairs),
            test_completion_tokens=sum(p["completion_tokens"] for p in pairs),
            max_tokens=None,
            latency_ms=sum(p["latency_ms"] for p in pairs),
        )

    def _sample(self, item: Item, qi: int, v: int, arm: str) -> None:
        question, gold = item.queries[qi].question, item.queries[qi].answer
        gateway = self.st.gateway
        scorer = self.scorer(item)
        samples = []
        for i in range(self.cfg.samples):
            if self.cfg.protocol == "paper":
                s = self._answer(
                    item,
                    qi,
                    v,
                    memory=EMPTY_MEMORY,
                    step="parallel",
                    temperature=self.cfg.temperature,
                    seed=_sample_seed(gateway, i),
                )
                samples.append(s)
                continue
            messages = prompts.query_messages(
                question, context=item.context, learned=None, verbosity=v
            )
            try:
                res = call(
                    gateway,
                    messages,
                    phase="test",
                    step="parallel",
                    max_tokens=call_max_tokens(gateway.model, Budget(verbosity=v)),
                    temperature=self.cfg.temperature,
                    seed=_sample_seed(gateway, i),
                )
            except SleepTimeError as exc:
                samples.append(_failed_sample(exc))
                continue
            samples.append(
                {
                    "text": res.text,
                    "key": scorer.key(res.text),
                    "correct": scorer.correct(res.text, self._gold(item, qi)),
                    "prompt_tokens": res.usage.prompt_tokens,
                    "completion_tokens": res.usage.completion_tokens,
                }
            )
        majority, majority_correct = vote(samples)
        failed = [smp["error"] for smp in samples if smp.get("error")]
        self._result(
            item,
            qi,
            arm,
            kind="parallel",
            k=0,
            verbosity=v,
            gold=gold,
            response=samples[0]["text"],
            extracted=None if failed else majority,
            correct=majority_correct and not failed,
            pass_at_k=any(smp["correct"] for smp in samples) and not failed,
            samples=samples,
            distinct=len({smp["text"] for smp in samples}),
            source="error" if failed else "parallel",
            **({"error": failed[0]} if failed else {}),
            test_prompt_tokens=sum(smp["prompt_tokens"] for smp in samples),
            test_completion_tokens=sum(smp["completion_tokens"] for smp in samples),
            latency_ms=None,
        )
