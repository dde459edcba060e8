"""The paper's prompts: the sleep agent's and the test agents' (system, persona, human) per
verbosity, built in (in our words) or read from a checkout of the paper's code
(``--prompts DIR``)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from sleeptime.errors import InvalidInput

#: Version of the built-in texts below; recorded with every call and in ``run.json``.
PAPER_PROMPTS_VERSION = "paper-2026-12-05.1"

#: The paper's memory block holds at most this many characters.
MEMORY_CHARS = 5000
#: What an untouched memory block holds (as in the paper's runs).
EMPTY_MEMORY = "[empty]"
#: The block's label, as the paper's prompts call it.
MEMORY_LABEL = "rethink_memory_block"


SLEEP_SYSTEM = (
    "Your job is to think about a situation before anyone asks about it. Work out the "
    "quantities, inferences, calculations and reasoning that will help answer the "
    "questions someone is likely to ask about it later, and keep them in your memory "
    f"block `{MEMORY_LABEL}`. Whoever answers the questions later reads that block.\n\n"
    "Rewrite the block as many times as you need. Each time, add new calculations, "
    "double-check the ones you wrote before, and remove anything that is not useful. A "
    "rewrite replaces the whole block, so copy over everything from the old block that "
    "is still useful. Keep going until the block holds every useful calculation and you "
    "have checked that it has no errors and nothing that would not help; only then say "
    "you are done."
)

SLEEP_PERSONA = (
    "I am an expert reasoner. Given a new situation, I work out calculations and "
    "inferences that will be useful for the questions likely to come. I am verbose: in my "
    "memory block I brainstorm many different kinds of questions that could be asked about "
    "the situation, with the reasoning needed to answer each, and I write all my "
    "questions, calculations and inferences there. I keep rewriting it until nothing "
    "useful is missing and I have checked that nothing wrong or useless is left."
)

SLEEP_HUMAN = "I bring problems that are worth thinking about deeply and carefully."

SLEEP_SYSTEM_AIME_EXTRA = (
    "You are given only part of a competition math problem; the rest comes later. Draw "
    "as many inferences as you can from this part, guess the ways the rest of the problem "
    "could go, and compute results that would help reach the final answer quickly once "
    "the whole problem is known."
)

#: How the model rewrites the block when it can call tools.
TOOLS_PROTOCOL = (
    "To rewrite the block, call `rethink_memory` with the complete new text as "
    "`new_memory`. When the block is complete and checked, call "
    "`finish_rethinking_memory`."
)

#: How the model rewrites the block when it cannot call tools (plain text replies).
TEXT_PROTOCOL = (
    "Reply in one of two ways. To rewrite the block, write a first line with the single "
    "word REWRITE, then the complete new text of the block. When the block is complete "
    "and checked, reply with the single word FINISHED."
)


_USE_NOTES = (
    f"When you get a question, first look in your memory block `{MEMORY_LABEL}` for notes "
    "prepared in advance: possible questions with their answers, and intermediate "
    "reasoning that can help. Answer from those notes instead of working things out on "
    "the spot. Do not recompute anything the notes already hold. Do not think out loud "
    "unless you really have to."
)
_ROLE = "You answer questions accurately and concisely, in the way your persona describes."
_FEW_TOKENS = "Use only as many tokens as the answer needs, and no more."

TEST_SYSTEM: dict[int, str] = {
    0: f"{_ROLE}\n\n{_USE_NOTES}\n\n"
    "Reply directly, with a single sentence: 'The answer is' followed by the number.",
    1: f"{_ROLE}\n\n{_FEW_TOKENS} {_USE_NOTES}\n\n"
    "Give one short sentence of explanation, then a sentence that starts with "
    "'The answer is' and gives the number.",
    2: f"{_ROLE}\n\n{_FEW_TOKENS} {_USE_NOTES}\n\n"
    "Give two short sentences of explanation, then a sentence that starts with "
    "'The answer is' and gives the number.",
    3: f"{_ROLE}\n\n{_FEW_TOKENS} {_USE_NOTES}\n\n"
    "End your reply with the final numerical answer, with no reasoning after it.",
    4: "You reason through problems step by step, accurately, in the way your persona "
    "describes.\n\n"
    f"When you get a question, look in your memory block `{MEMORY_LABEL}` for notes "
    "prepared in advance: possible questions with their answers, and intermediate "
    "reasoning that can help. Check carefully whether what the notes say is right before "
    "you use it, and always reason out loud before using any of it.\n\n"
    "Explain every step of your reasoning. If you use a number from the notes, first "
    "recompute it and double-check it. End with 'The answer is' followed by the number.",
}

TEST_PERSONA: dict[int, str] = {
    0: "I am a concise and accurate question-answering system. I always look at what I "
    "have already computed in my memory block. I answer directly with one sentence that "
    "starts with 'The answer is'. I do not reason out loud before answering and I do not "
    "announce what I am going to do.",
    1: "You work through the problem step by step, efficiently, to get it right. You "
    "answer with one short sentence of explanation, then a sentence that starts with "
    "'The answer is' and gives a number.",
    2: "You work through the problem step by step, efficiently, to get it right. You "
    "answer with two sentences of explanation, then a sentence that starts with "
    "'The answer is' and gives a number.",
    3: "You work through the problem step by step, efficiently, to get it right. You use "
    "as much reasoning as it takes to be correct, and no more.",
    4: "You work through the problem step by step, double-checking anything that was "
    "computed before. You explain your answer to the user thoroughly.",
}

TEST_HUMAN: dict[int, str] = {
    0: "I need direct and concise answers.",
    1: "I need direct and concise answers: always one short sentence of explanation and "
    "one sentence with the answer.",
    2: "I need direct and concise answers: always two short sentences of explanation and "
    "one sentence with the answer.",
    3: "I need accurate information.",
    4: "I need long, thorough explanations, with every reasoning step that leads to the "
    "right answer explained one by one.",
}


@dataclass(frozen=True)
class PaperPrompts:
    """One complete set of paper-protocol prompts (built in, or read from a directory)."""

    version: str
    sleep_system: str
    sleep_persona: str
    sleep_human: str
    test_system: dict[int, str]
    test_persona: dict[int, str]
    test_human: dict[int, str]
    #: Sleep-time system prompt for partial competition problems (Stateful AIME).
    sleep_system_aime: str
    source: str = "built-in"
    files: dict[str, str] = field(default_factory=dict)

    def sleep_task(self, *, aime: bool = False) -> str:
        return self.sleep_system_aime if aime else self.sleep_system


BUILTIN = PaperPrompts(
    version=PAPER_PROMPTS_VERSION,
    sleep_system=SLEEP_SYSTEM,
    sleep_persona=SLEEP_PERSONA,
    sleep_human=SLEEP_HUMAN,
    test_system=dict(TEST_SYSTEM),
    test_persona=dict(TEST_PERSONA),
    test_human=dict(TEST_HUMAN),
    sleep_system_aime=f"{SLEEP_SYSTEM}\n\n{SLEEP_SYSTEM_AIME_EXTRA}",
)


#: Where one sentence of a line ends and the next begins.
_SENTENCE_END = re.compile(r"(?<=[.!?])[ \t]+")


def strip_send_message(text: str) -> str:
    """``text`` without the sentences that name ``send_message``: the paper's test-time
    files tell the agent to answer through Letta's ``send_message`` tool, which is not
    bound here (the answer is the reply's text), so the instruction is left out."""
    lines = []
    for line in text.splitlines():
        if "send_message" not in line:
            lines.append(line)
            continue
        sentences = _SENTENCE_END.split(line)
        kept = " ".join(x for x in sentences if "send_message" not in x).strip()
        if kept:
            lines.append(kept)
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


def load_prompt_dir(path: str | Path) -> PaperPrompts:
    """Read the paper's prompt files from a local checkout of its repository.

    ``path`` is the checkout (holding ``prompts/``) or its ``prompts/`` directory. It
    must hold ``system/sleep_time_base.txt`` and, for each level N in 0-4,
    ``system/convo_verbosity_N.txt``, ``persona/persona_verbosity_N.txt`` and
    ``human/human_verbosity_N.txt``; ``system/sleep_time_base_aime.txt`` is used for
    Stateful AIME when present. The sleep agent's persona and user description live in
    the paper's scripts, not in files, so ours are used unless the directory also has
    ``persona/sleep_time_persona.txt`` / ``human/sleep_time_human.txt``. Sentences that
    ask for Letta's ``send_message`` tool are left out (:func:`strip_send_message`): no
    such tool is bound, the answer is the reply's text.
    """
    root = Path(path).expanduser()
    if (root / "prompts").is_dir():
        root = root / "prompts"
    if not root.is_dir():
        raise InvalidInput(
            f"--prompts {path}: not a directory; pass a local checkout of "
            "letta-ai/sleep-time-compute (or its prompts/ folder)"
        )
    wanted = {"system/sleep_time_base.txt": True}
    for n in range(5):
        wanted[f"system/convo_verbosity_{n}.txt"] = True
        wanted[f"persona/persona_verbosity_{n}.txt"] = True
        wanted[f"human/human_verbosity_{n}.txt"] = True
    optional = (
        "system/sleep_time_base_aime.txt",
        "persona/sleep_time_persona.txt",
        "human/sleep_time_human.txt",
    )
    missing = [name for name in wanted if not (root / name).is_file()]
    if missing:
        raise InvalidInput(
            f"--prompts {path}: missing {', '.join(missing[:3])}"
            + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            + "; expected the prompts/ folder of letta-ai/sleep-time-compute"
        )
    texts: dict[str, str] = {}
    for name in [*wanted, *optional]:
        file = root / name
        if file.is_file():
            try:
                texts[name] = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise InvalidInput(f"--prompts {path}: cannot read {name}: {exc}") from exc
    digest = hashlib.sha256()
    for name in sorted(texts):
        digest.update(name.encode() + b"\0" + texts[name].encode() + b"\0")
    files = {name: hashlib.sha256(t.encode()).hexdigest()[:12] for name, t in texts.items()}
    texts = {name: strip_send_message(t) for name, t in texts.items()}
    sleep_system = texts["system/sleep_time_base.txt"]
    return PaperPrompts(
        version=f"paper-dir-{digest.hexdigest()[:12]}",
        sleep_system=sleep_system,
        sleep_persona=texts.get("persona/sleep_time_persona.txt", SLEEP_PERSONA),
        sleep_human=texts.get("human/sleep_time_human.txt", SLEEP_HUMAN),
        test_system={n: texts[f"system/convo_verbosity_{n}.txt"] for n in range(5)},
        test_persona={n: texts[f"persona/persona_verbosity_{n}.txt"] for n in range(5)},
        test_human={n: texts[f"human/human_verbosity_{n}.txt"] for n in range(5)},
        sleep_system_aime=texts.get("system/sleep_time_base_aime.txt", sleep_system),
        source=str(root),
        files=files,
    )
