"""Compare two generative evaluations of the same users, paired (NDCG@10, b - a, 95% bootstrap interval).

    python eval/compare_runs.py runs/eval/decoding_valid/t1.0 runs/eval/decoding_valid/t0.7
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genrec.errors import GenrecError  # noqa: E402
from genrec.evaluation import compare_generative_runs  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="evaluation output folder (or its ranks_calrec.jsonl): the baseline")
    ap.add_argument("b", help="the other evaluation of the same users")
    ap.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples over users")
    args = ap.parse_args(argv)
    try:
        r = compare_generative_runs(args.a, args.b, args.resamples)
    except GenrecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{r['users']} users in both ({r['only_a']} only in a, {r['only_b']} only in b)")
    print("| NDCG@10 | a | b | b - a | 95% interval |\n|---|---|---|---|---|")
    for side in ("exp", "opt", "pes"):  # expected under random tie-breaking: the headline
        s = r[side]
        print(f"| {side} | {s['a']:.4f} | {s['b']:.4f} | {s['delta']:+.4f} | [{s['ci95'][0]:+.4f}, {s['ci95'][1]:+.4f}] |")
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
