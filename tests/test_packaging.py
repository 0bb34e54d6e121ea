"""What `pip install .` (the README's quick start) installs: every module of the package, the Lua Envoy
runs and the console's templates — built as a real wheel, not read from the source tree."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_the_wheel_holds_every_module_the_lua_and_the_console(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("lunaroute_envoy-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "extproc").rglob("*.py")}
    assert sources - names == set(), "modules missing from the wheel (pyproject's packages list)"
    lua = {f"extproc/_envoy/{p.name}" for p in (ROOT / "envoy").glob("*.lua")}
    assert lua and lua <= names
    console = {p.relative_to(ROOT).as_posix() for p in (ROOT / "extproc" / "console").rglob("*")
               if p.suffix in (".html", ".css")}
    assert console and console <= names
