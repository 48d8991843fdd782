"""Write a deployment bundle (the same as ``genrec bundle``).

    python inference/make_bundle.py --config inference/configs/bundle_demo.yaml out=bundles/demo
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from genrec import console  # noqa: E402
from genrec.bundle import BundleConfig, write_bundle  # noqa: E402
from genrec.config import parse_args  # noqa: E402
from genrec.errors import GenrecError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(BundleConfig, argv, description=__doc__.splitlines()[0])
    out = Path(cfg.out or ".")
    log_file = console.setup(out.parent / "logs", f"bundle-{out.name}", capture_fds=argv is None)
    try:
        with console.step(None, None, f"bundle -> {cfg.out}") as st:
            console.say(f"  logs: {log_file}")
            path = write_bundle(cfg)
            st.done(f"bundle written: {path} (run record inside: run.json)")
    except GenrecError as e:
        console.error(str(e))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
