"""Build hook: the wheel carries the top-level configs/ and ds_config.json as svformer/package_data/.

Everything else about the package is declared in pyproject.toml. The layout keeps configs/ and
ds_config.json at the top of the checkout (where `python cli.py` finds them), outside the package
directory that setuptools' package-data can reach, so build_py copies them in; `svformer.resources`
finds them there in an install, and at the checkout's top otherwise (editable installs included).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
TARGET = Path("svformer", "package_data")  # svformer.resources.PACKAGE_DATA


def bundled_files() -> list[Path]:
    """The shipped files, relative to the checkout: ds_config.json and everything under configs/."""
    configs = sorted(p.relative_to(ROOT) for p in (ROOT / "configs").rglob("*") if p.is_file())
    return [Path("ds_config.json"), *configs]


class BuildPyWithData(build_py):
    """build_py, plus copies of the bundled files under svformer/package_data/ in the build tree."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads them from the checkout
            return
        for rel, out in zip(bundled_files(), self._bundled_outputs()):
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / rel, out)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        extra = [] if self.editable_mode else [str(p) for p in self._bundled_outputs()]
        return super().get_outputs(include_bytecode) + extra

    def _bundled_outputs(self) -> list[Path]:
        return [Path(self.build_lib, TARGET, rel) for rel in bundled_files()]


setup(cmdclass={"build_py": BuildPyWithData})
