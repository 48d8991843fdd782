"""Write a deployment bundle (the same as ``genrec bundle``).

    python inference/make_bundle.py --config inference/configs/bundle_demo.yaml out=bundles/demo
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from genrec.bundle import BundleConfig, write_bundle  # noqa: E402
from genrec.config import parse_args  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(BundleConfig, argv, description=__doc__.splitlines()[0])
    print(f"bundle written: {write_bundle(cfg)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
