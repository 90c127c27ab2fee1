"""Build step of the jobrunner wheel: compile the Rust library and bundle it.

`pip install ./bindings/python` runs `cargo build --release` in the repository root (two
levels up, or $JOBRUNNER_SOURCE_DIR) and copies target/release/libjobrunner.so into the
package. The wheel holds a native library, so it is tagged for this platform (but for
any Python 3: the package itself is pure ctypes, with no CPython extension).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

try:  # setuptools >= 70.1 has its own; older ones use wheel's
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # pragma: no cover
    from wheel.bdist_wheel import bdist_wheel

HERE = Path(__file__).resolve().parent
LIB_NAME = "libjobrunner.so"


def _source_dir() -> Path:
    root = Path(os.environ.get("JOBRUNNER_SOURCE_DIR", HERE.parents[1]))
    if not (root / "Cargo.toml").exists():
        raise SystemExit(
            f"jobrunner: no Cargo.toml in {root}: build from the repository checkout "
            "(pip install ./bindings/python) or set JOBRUNNER_SOURCE_DIR to it"
        )
    return root


class BuildPyWithLibrary(build_py):
    """build_py, then `cargo build --release` and copy the library into the package."""

    def run(self) -> None:
        super().run()
        root = _source_dir()
        cargo = os.environ.get("CARGO", "cargo")
        if shutil.which(cargo) is None:
            raise SystemExit("jobrunner: cargo not found: install a Rust toolchain (rustup)")
        subprocess.run([cargo, "build", "--release", "--lib"], cwd=root, check=True)
        built = root / "target" / "release" / LIB_NAME
        dest = Path(self.build_lib) / "jobrunner" / LIB_NAME
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built, dest)


class PlatformWheel(bdist_wheel):
    """A wheel for this platform and any Python 3 (no CPython extension inside)."""

    def finalize_options(self) -> None:
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self) -> tuple[str, str, str]:
        _python, _abi, plat = super().get_tag()
        return "py3", "none", plat


class BinaryDistribution(Distribution):
    """Tells setuptools the package holds a native library."""

    def has_ext_modules(self) -> bool:
        return True


setup(
    cmdclass={"build_py": BuildPyWithLibrary, "bdist_wheel": PlatformWheel},
    distclass=BinaryDistribution,
)
