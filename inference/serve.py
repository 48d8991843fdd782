"""Serve a bundle over HTTP (the same as ``genrec serve BUNDLE``).

    python inference/serve.py --config inference/configs/serve.yaml bundle=my-bundle port=8000

A page to try it at /; POST /recommend {"history": [item ids], "k": 10, "budget_ms": 2000};
GET /items?q=words (catalog search); GET /health; GET /metrics.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from genrec.config import parse_args  # noqa: E402
from genrec.errors import ConfigError  # noqa: E402


@dataclass
class ServeConfig:
    bundle: str = ""  # bundle directory (genrec bundle)
    host: str = "127.0.0.1"  # address to listen on
    port: int = 8000  # port; the page to try it is at http://host:port/
    backend: str | None = None  # vllm | hf (default: the bundle's setting)
    log_level: str = "info"  # uvicorn's level (access lines are info)
    log_dir: str = "runs/serve/logs"  # folder of serve.log (engine and access logs); "" = the console
    generation: dict = field(default_factory=dict)  # overrides of the bundle's generation settings
    admin_token_file: str = ""  # file holding the token catalog changes must carry ("" = env GENREC_ADMIN_TOKEN)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(ServeConfig, argv, description=__doc__.splitlines()[0])
    if not cfg.bundle:
        raise ConfigError("serve: `bundle` (a bundle directory) is required")
    from genrec.server import serve

    serve(cfg.bundle, host=cfg.host, port=cfg.port, backend=cfg.backend, log_level=cfg.log_level,
          log_dir=cfg.log_dir or None, admin_token_file=cfg.admin_token_file or None, **cfg.generation)
    return 0


if __name__ == "__main__":
    sys.exit(main())
