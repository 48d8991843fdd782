"""The ``genrec`` command: data statistics, the main job, bundles, serving, evaluation.

Each sub-command is a thin shell over a library function, so everything it does can be
reached (and tested) from Python too.
"""

from __future__ import annotations

import argparse
import sys

from genrec.errors import GenrecError


def _data_stats(args: argparse.Namespace) -> int:
    from genrec.config import parse_override
    from genrec.data.stats import dataset_stats

    options = {}
    for text in args.option:
        keys, value = parse_override(text)
        options[".".join(keys)] = value
    print(dataset_stats(args.format, args.path, on_unknown_item=args.on_unknown_item, **options))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from genrec.config import load_config
    from genrec.main_job import MainJobConfig, run_main_job

    run_main_job(load_config(MainJobConfig, args.config, args.overrides))
    return 0


def _bundle(args: argparse.Namespace) -> int:
    from genrec.bundle import build_bundle_cli

    return build_bundle_cli(args.config, args.overrides) or 0


def _serve(args: argparse.Namespace) -> int:
    from genrec.server import serve

    serve(args.bundle, host=args.host, port=args.port, backend=args.backend, log_dir=args.log_dir or None,
          admin_token_file=args.admin_token_file)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from genrec.config import load_config
    from genrec.evaluation import EvalConfig, results_markdown, run_evaluation

    cfg = load_config(EvalConfig, args.config, args.overrides)
    print(results_markdown(run_evaluation(cfg)))
    return 0


# The settings dataclass of each config-driven sub-command (its --help lists every setting).
SETTINGS = {"demo": ("genrec.main_job", "MainJobConfig"), "bundle": ("genrec.bundle", "BundleConfig"),
            "evaluate": ("genrec.evaluation", "EvalConfig")}


def _settings_class(command: str) -> type:
    import importlib

    module, name = SETTINGS[command]
    return getattr(importlib.import_module(module), name)


def build_parser() -> argparse.ArgumentParser:
    from genrec.config import build_parser as config_parser

    parser = argparse.ArgumentParser(prog="genrec", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="inspect datasets").add_subparsers(dest="data_command", required=True)
    stats = data.add_parser("stats", help="print users / items / interactions of a dataset")
    stats.add_argument("--format", required=True,
                       help="lcrec, recbole, p5, dealrec, amazon2018, csv, native, demo")
    stats.add_argument("--path", required=True, help="folder (or file) holding the dataset")
    stats.add_argument("--on-unknown-item", default="error", choices=["error", "drop"],
                       help="what to do with sequence items the catalog lacks")
    stats.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                       help="reader option, e.g. the csv column mapping: --option user_col=uid")
    stats.set_defaults(func=_data_stats)

    for name, func, helptext in [
        ("demo", _demo, "the main job end to end on the embedded demo data"),
        ("bundle", _bundle, "write a deployment bundle (change a written one's catalog with "
                            "`genrec bundle add-items|update-items|withdraw|restore BUNDLE ...`)"),
        ("evaluate", _evaluate, "evaluate recommender paths on a split"),
    ]:
        p = sub.add_parser(name, help=helptext, description=helptext)
        config_parser(_settings_class(name), helptext, parser=p)
        p.set_defaults(func=func)

    serve = sub.add_parser("serve", help="serve recommendations over HTTP from a bundle (a page at /)",
                           description="Serve a bundle: a page to try it at /, POST /recommend, GET /items?q=, "
                                       "/health, /metrics.")
    serve.add_argument("bundle", help="bundle directory (genrec bundle)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    serve.add_argument("--backend", default=None, help="vllm | hf (default: the bundle's setting)")
    serve.add_argument("--log-dir", default="runs/serve/logs",
                       help="folder of serve.log: engine and access logs (default: %(default)s; '' = console)")
    serve.add_argument("--admin-token-file", default=None,
                       help="file holding the token catalog changes (POST/PUT/DELETE /items) must carry; "
                            "default: the GENREC_ADMIN_TOKEN environment variable, else changes are refused")
    serve.add_argument("--verbose", "-v", action="store_true", help="library and engine logs on the console too")
    serve.set_defaults(func=_serve)
    return parser


# `genrec bundle <change> BUNDLE ...`: catalog changes of a written bundle (genrec.live_catalog)
CATALOG_COMMANDS = {"add-items": "add", "update-items": "update", "withdraw": "withdraw", "restore": "restore"}


def catalog_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genrec bundle", description="Change the catalog of a written bundle "
                                     "(applied atomically; a running server does not see it until restarted, "
                                     "use its POST/PUT/DELETE /items for that).")
    sub = parser.add_subparsers(dest="change", required=True)
    for name, helptext, arg, arghelp in [
        ("add-items", "add new items", "file", "JSON lines, one item a line (item_id, title, brand, ...)"),
        ("update-items", "change items' text", "file", "JSON lines: item_id and the fields to change"),
        ("withdraw", "never recommend these items again (still accepted in histories)", "ids", "item ids"),
        ("restore", "recommend withdrawn items again", "ids", "item ids"),
    ]:
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.add_argument("bundle", help="bundle directory")
        p.add_argument(arg, nargs=None if arg == "file" else "+", help=arghelp)
    return parser


def _catalog_change(argv: list[str]) -> int:
    from genrec.bundle import Bundle
    from genrec.live_catalog import read_items_file

    args = catalog_parser().parse_args(argv)
    op = CATALOG_COMMANDS[args.change]
    bundle = Bundle.load(args.bundle)
    if op in ("add", "update"):
        rows = read_items_file(args.file)
        payload = rows if op == "add" else [(r.get("item_id"), r) for r in rows]
    else:
        payload = list(args.ids)
    snap = bundle.change_catalog(op, payload)
    print(f"{args.change}: {len(payload)} item(s); catalog version {snap.version}: {len(snap.catalog)} items, "
          f"{int(snap.withdrawn.sum())} withdrawn")
    return 0


def main(argv: list[str] | None = None) -> int:
    from genrec import console
    from genrec.config import apply_verbose

    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) >= 2 and argv[0] == "bundle" and argv[1] in CATALOG_COMMANDS:
        func, args = (lambda _a: _catalog_change(argv[1:])), None
    else:
        args = build_parser().parse_args(argv)
        func = args.func
    apply_verbose(getattr(args, "verbose", False))
    try:
        return func(args)
    except GenrecError as e:
        where = console.log_path()
        print(f"genrec: error: {e}" + (f" (log: {where})" if where else ""), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
