"""A normal (non-editable) install carries the prompt templates inside the package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_ships_templates_and_loader_finds_them(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
                    str(REPO)], check=True)
    wheel = next((tmp_path / "dist").glob("genrec-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "genrec/prompts/calrec.yaml" in names and "genrec/prompting.py" in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                    str(wheel)], check=True)
    code = ("import genrec.prompting as p; t = p.PromptTemplate.load('calrec_compact'); "
            "print(p.__file__); print(p.template_dirs()[0]); print(t.name)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}).stdout.split()
    assert out[0].startswith(str(target)) and out[1] == str(target / "genrec" / "prompts")
    assert out[2] == "calrec_compact"
