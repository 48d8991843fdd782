"""A normal (non-editable) install carries the prompt templates inside the package."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_ships_templates_and_loader_finds_them(tmp_path):
    # hatchling comes with the [dev] extra: build without isolation, so no registry is needed at test time.
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", *isolation,
                    "-w", str(tmp_path / "dist"), str(REPO)], check=True)
    wheel = next((tmp_path / "dist").glob("genrec-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    repo_templates = {f"genrec/prompts/{p.name}" for p in (REPO / "prompts").glob("*.yaml")}
    assert "genrec/prompts/calrec.yaml" in repo_templates and repo_templates <= names
    assert "genrec/prompting.py" in names and "genrec/cli.py" in names
    assert not any(n.startswith(("tests/", "prompts/", ".venv/")) for n in names)

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                    str(wheel)], check=True)
    # Run from an empty folder with only the installed copy on the path: no checkout to fall back on.
    code = ("import genrec.prompting as p; t = p.PromptTemplate.load('calrec_compact'); "
            "print(p.__file__); print([str(d) for d in p.template_dirs()]); print(t.name); print(len(p.available_templates()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}).stdout.splitlines()
    assert out[0].startswith(str(target))
    assert out[1] == repr([str(target / "genrec" / "prompts")])
    assert out[2] == "calrec_compact"
    assert int(out[3]) == len(repo_templates)
