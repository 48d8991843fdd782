"""Print the ledger (docs/results/summary.json) as the Markdown tables of docs/results.md.

    python eval/ledger_report.py                       # every dataset
    python eval/ledger_report.py --dataset scientific,beauty --methods sasrec,llmesr

One table per dataset, means over seeds (± sample std where several seeds ran; full catalog,
history masked, all test users unless the row says otherwise). Its first metric column, the
headline, is NDCG@10 expected under random tie-breaking (``ndcg@10_expected``, SPEC.md §12),
then the optimistic and pessimistic NDCG@10 that bound it, expected Recall@10 and MRR@10
(RecBole's truncated MRR), users and seeds; ``n_empty`` (users whose generation grounded to
nothing) where rows count it, and the date and commit a row was written at where rows have them.
A row measured with ties before the expected value was kept shows its bounds instead.
``--groups``: expected NDCG@10 by head/tail users and items. ``--cold``: the cold-item protocol's
table (cold-target, warm-target and all events) of the datasets whose rows have it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genrec.ledger import format_cold, format_entries, format_groups, read_ledger  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledger", default="docs/results/summary.json")
    parser.add_argument("--dataset", default="", help="comma-separated datasets, in the ledger's order (default: all)")
    parser.add_argument("--methods", default="", help="comma-separated methods, in this order (default: all)")
    parser.add_argument("--groups", action="store_true", help="NDCG@10 by head/tail users and items instead")
    parser.add_argument("--cold", action="store_true", help="NDCG@10 on cold- and warm-target events instead")
    args = parser.parse_args(argv)
    ledger = read_ledger(args.ledger)
    if not ledger:
        print(f"error: {args.ledger}: no ledger", file=sys.stderr)
        return 2
    for dataset, methods in ledger.items():
        if args.dataset and dataset not in args.dataset.split(","):
            continue
        names = [m for m in args.methods.split(",") if m in methods] if args.methods else list(methods)
        chosen = {m: methods[m] for m in names}
        if args.cold and not any("ndcg@10_cold" in e for e in chosen.values()):
            continue
        print(f"### {dataset}\n")
        print(format_cold(chosen) if args.cold else format_groups(chosen) if args.groups else format_entries(chosen))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
