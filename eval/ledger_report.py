"""Print the ledger (docs/results/summary.json) as the Markdown tables of docs/results.md.

    python eval/ledger_report.py                       # every dataset
    python eval/ledger_report.py --dataset scientific --methods sasrec,llmesr

One table per dataset (``--groups``: NDCG@10 by head/tail users and items): mean over seeds (± sample std where several seeds ran) of NDCG@10,
Recall@10, Recall@1, MRR (optimistic ranks; full catalog, history masked, all test users), the
tail- and head-item NDCG@10, and the seeds and users each row was measured on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genrec.ledger import format_entries, format_groups, read_ledger  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledger", default="docs/results/summary.json")
    parser.add_argument("--dataset", default="", help="one dataset (default: all)")
    parser.add_argument("--methods", default="", help="comma-separated methods, in this order (default: all)")
    parser.add_argument("--groups", action="store_true", help="NDCG@10 by head/tail users and items instead")
    args = parser.parse_args(argv)
    ledger = read_ledger(args.ledger)
    if not ledger:
        print(f"error: {args.ledger}: no ledger", file=sys.stderr)
        return 2
    for dataset, methods in ledger.items():
        if args.dataset and dataset != args.dataset:
            continue
        names = [m for m in args.methods.split(",") if m in methods] if args.methods else list(methods)
        print(f"### {dataset}\n")
        chosen = {m: methods[m] for m in names}
        print(format_groups(chosen) if args.groups else format_entries(chosen))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
