"""Document Q&A with sleep-time compute: ingest a folder of text files, let sleep-time
compute prepare each one, ask many questions, and print the savings table.

    python examples/document_qa.py [FOLDER]               # bundled local model, offline
    python examples/document_qa.py FOLDER --model fake    # deterministic scripted model

Without FOLDER it uses the sample document shipped with the package. For each file
it asks the questions sleep-time compute predicted (re-asked as a user would) and a
few of its own, then compares test-time tokens with a cold baseline: the same
questions asked about the same text with no sleep-time work. Sleep-time tokens are
counted too, so the table shows when the up-front work pays off.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sleeptime import Settings, SleepTime

EXTRA = ["What is this document about?", "Which numbers matter most here?"]
SAMPLE = Path(__file__).parent.parent / "sleeptime" / "data" / "sample_context.txt"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?", type=Path, help="folder of .txt/.md files")
    ap.add_argument("--model", default="local")
    ap.add_argument("--questions", type=int, default=3, help="predicted per document")
    args = ap.parse_args(argv)
    files = (
        sorted(p for p in args.folder.iterdir() if p.suffix in {".txt", ".md"})
        if args.folder
        else [SAMPLE]
    )
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(model=args.model, n_questions=args.questions, sleep_max_tokens=192)
        url = f"sqlite:///{Path(tmp) / 'docs.db'}"
        with SleepTime(model=args.model, database_url=url, settings=settings) as st:
            for path in files:
                text = path.read_text(encoding="utf-8")
                cid = path.stem[:200] or "doc"
                st.ingest("docs", cid, text)
                st.ingest("cold", cid, text)  # same text, never prepared: the baseline
                report = st.sleep("docs", cid, progress=lambda m, c=cid: print(f"  {c}: {m}"))
                questions = [qa.question for qa in report.qas] + EXTRA
                for q in questions:
                    st.ask("docs", cid, q, verbosity=1)
                    st.ask("cold", cid, q, verbosity=1)
                warm, cold = st.ledger("docs", cid), st.ledger("cold", cid)
                rows.append(
                    {
                        "document": cid,
                        "questions": len(questions),
                        "zero_token": warm.by_source.get("predicted", 0),
                        "sleep_tokens": warm.sleep.total_tokens,
                        "test_tokens": warm.test.total_tokens,
                        "cold_test_tokens": cold.test.total_tokens,
                        "warnings": warm.warnings,
                    }
                )
    table = Table(title=f"sleep-time compute savings ({args.model})")
    for col in ("document", "questions", "zero-token", "sleep tok", "test tok", "cold test tok"):
        table.add_column(col, justify="left" if col == "document" else "right")
    for r in rows:
        table.add_row(
            r["document"],
            str(r["questions"]),
            str(r["zero_token"]),
            f"{r['sleep_tokens']:,}",
            f"{r['test_tokens']:,}",
            f"{r['cold_test_tokens']:,}",
        )
    Console().print(table)
    print(
        "test tok: tokens spent answering with sleep-time artifacts; cold test tok: the "
        "same questions with none. Sleep tokens are spent once per document version."
    )
    return rows


if __name__ == "__main__":
    main()
