"""Build ``sleeptime/data/stateful_gsm8k.jsonl`` from the GSM8K test set and GSM8K-Platinum.

Stateful GSM8K (as in the Sleep-time Compute paper): each problem's last sentence is the
query and the rest the context, split with :func:`sleeptime.bench.datasets.split_problem`
(a rule-based splitter that keeps "$3.50", "Mr.", "a.m." and decimals intact). Labels come
from GSM8K-Platinum: the 110 questions it removed are dropped and its 10 revised answers
are used. Problems of a single sentence have no context and are dropped too.

    python scripts/prepare_gsm8k.py [--gsm8k ../shared/data/gsm8k/test.jsonl]
        [--platinum ../shared/data/gsm8k-platinum/gsm8k_platinum_test.jsonl] [--out FILE]

Prints a JSON summary. Deterministic: running it twice writes the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from sleeptime.bench.datasets import Item, Query, split_problem, write_jsonl
from sleeptime.errors import InvalidInput

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
GSM8K_SHA256 = "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"
PLATINUM_SHA256 = "893937ac05f9c54fe7523f008b1b92cbcf161a9874b008036d0b94fe16358bb8"
#: From ../shared/data/gsm8k-platinum/SOURCE.md, to check the alignment below.
EXPECTED_REMOVED = 110
EXPECTED_REVISED = {
    288: "4",
    403: "135",
    454: "240",
    649: "160000",
    749: "6",
    823: "18",
    952: "1800",
    1035: "40",
    1071: "257",
    1309: "2180",
}


def _rows(path: Path, sha256: str) -> list[dict[str, str]]:
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        sys.exit(f"{path}: sha256 {digest} differs from the documented {sha256}")
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]


def _number(text: str) -> str:
    return text.strip().replace(",", "")


def build(gsm8k: Path, platinum: Path) -> tuple[list[Item], dict[str, object]]:
    gsm = _rows(gsm8k, GSM8K_SHA256)
    plat = _rows(platinum, PLATINUM_SHA256)
    items: list[Item] = []
    removed: list[int] = []
    revised: dict[int, str] = {}
    single: list[int] = []
    j = 0
    for i, row in enumerate(gsm):
        # Platinum keeps GSM8K's order, so one pass aligns them; a GSM8K row that is not
        # the next Platinum row was removed by Platinum.
        if j < len(plat) and plat[j]["input"] == row["question"]:
            label = _number(plat[j]["answer"])
            j += 1
        else:
            removed.append(i)
            continue
        original = _number(row["answer"].rsplit("####", 1)[1])
        if label != original:
            revised[i] = label
        try:
            context, question = split_problem(row["question"])
        except InvalidInput:
            single.append(i)
            continue
        meta: dict[str, object] = {"gsm8k_line": i}
        if label != original:
            meta["gsm8k_answer"] = original
        items.append(
            Item(
                id=f"gsm8k-{i:04d}",
                context=context,
                queries=(Query(question=question, answer=label, meta=meta),),
            )
        )
    if j != len(plat):
        sys.exit(f"alignment failed: matched {j} of {len(plat)} Platinum rows")
    if len(removed) != EXPECTED_REMOVED or revised != EXPECTED_REVISED:
        sys.exit(f"Platinum diff differs from SOURCE.md: removed {len(removed)}, revised {revised}")
    summary = {
        "gsm8k_rows": len(gsm),
        "platinum_rows": len(plat),
        "removed_by_platinum": len(removed),
        "revised_by_platinum": len(revised),
        "dropped_single_sentence": single,
        "items": len(items),
    }
    return items, summary


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--gsm8k", type=Path, default=SHARED / "gsm8k" / "test.jsonl")
    ap.add_argument(
        "--platinum", type=Path, default=SHARED / "gsm8k-platinum" / "gsm8k_platinum_test.jsonl"
    )
    ap.add_argument(
        "--out", type=Path, default=ROOT / "sleeptime" / "data" / "stateful_gsm8k.jsonl"
    )
    args = ap.parse_args()
    items, summary = build(args.gsm8k, args.platinum)
    write_jsonl(items, args.out)
    summary["out"] = str(args.out)
    summary["sha256"] = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
