"""No import loop among the modules of genrec/, and the loop finder that says so does find loops:
shown on small packages written to tmp_path, read by the same functions."""

from __future__ import annotations

from pathlib import Path

import pytest

from genrec.import_graph import describe, find_cycles, import_graph, main

GENREC = Path(__file__).resolve().parents[1] / "genrec"


def write_package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / next(iter(files)).split("/")[0]


def test_genrec_has_no_import_loop():
    graph = import_graph(GENREC)
    assert len(graph) > 50  # the whole package was read, not an empty folder
    loops = [describe(graph, loop) for loop in find_cycles(graph)]
    assert loops == [], "import loops in genrec/ (see docs/architecture.md for which way imports go):\n" + "\n".join(loops)


def test_a_loop_through_a_function_level_import_is_found_with_its_lines(tmp_path):
    pkg = write_package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "import os\n\nfrom pkg.b import helper\n",
        "pkg/b.py": "def helper():\n    from pkg import a\n    return a\n",
        "pkg/c.py": "from pkg.a import helper\n",  # imports into the loop, is not part of it
    })
    graph = import_graph(pkg)
    assert graph == {"pkg": {}, "pkg.a": {"pkg.b": 3}, "pkg.b": {"pkg.a": 2}, "pkg.c": {"pkg.a": 1}}
    loops = find_cycles(graph)
    assert loops == [["pkg.a", "pkg.b", "pkg.a"]]
    assert describe(graph, loops[0]) == "pkg.a (line 3) -> pkg.b (line 2) -> pkg.a"


def test_type_checking_and_relative_imports_count(tmp_path):
    pkg = write_package(tmp_path, {
        "top/__init__.py": "",
        "top/sub/__init__.py": "",
        "top/sub/x.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..y import Thing\n",
        "top/y.py": "from .sub import z\n",
        "top/sub/z.py": "from . import x\n",
    })
    loops = find_cycles(import_graph(pkg))
    assert loops == [["top.sub.x", "top.y", "top.sub.z", "top.sub.x"]]


def test_a_package_init_re_exporting_its_modules_is_no_loop(tmp_path):
    pkg = write_package(tmp_path, {
        "lib/__init__.py": "from lib.a import f\nfrom lib.b import g\n",
        "lib/a.py": "from lib.b import g\n\ndef f():\n    return g()\n",
        "lib/b.py": "import lib.c\n\ndef g():\n    return lib.c.K\n",
        "lib/c.py": "K = 1\n",
    })
    graph = import_graph(pkg)
    assert graph["lib.b"] == {"lib.c": 1}
    assert find_cycles(graph) == []


def test_a_longer_loop_is_reported_once_as_its_shortest_path(tmp_path):
    pkg = write_package(tmp_path, {
        "p/__init__.py": "",
        "p/a.py": "import p.b\n",
        "p/b.py": "import p.c\nimport p.d\n",
        "p/c.py": "import p.a\n",
        "p/d.py": "import p.c\n",
    })
    assert find_cycles(import_graph(pkg)) == [["p.a", "p.b", "p.c", "p.a"]]


def test_the_command_prints_the_loop_and_fails(tmp_path, capsys):
    pkg = write_package(tmp_path, {"q/__init__.py": "", "q/a.py": "import q.b\n", "q/b.py": "import q.a\n"})
    assert main([str(pkg)]) == 1
    assert capsys.readouterr().out == "import loop: q.a (line 1) -> q.b (line 1) -> q.a\n"
    (pkg / "b.py").write_text("X = 1\n")
    assert main([str(pkg)]) == 0


def test_a_file_that_does_not_parse_is_named_with_its_line(tmp_path):
    pkg = write_package(tmp_path, {"bad/__init__.py": "", "bad/m.py": "x = 1\ndef f(:\n"})
    with pytest.raises(SyntaxError, match=r"bad/m\.py:2: cannot parse"):
        import_graph(pkg)
