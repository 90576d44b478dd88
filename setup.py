"""Build hooks that pyproject.toml cannot express: the package map and the C extension.

The repository keeps its fixed top-level folders (runtime/, worlds/, ...) while users import one
namespace, `clove_gym.<folder>`: every folder below with an `__init__.py` becomes a subpackage of the
implicit namespace package `clove_gym`. Every C source under native/src/ is compiled into
`clove_gym.native._native`; its pure-Python twins live in runtime/.
"""

import os
from glob import glob

from setuptools import Extension, setup

TOP = ("runtime", "worlds", "benchmarks", "hw", "sim", "native")


def subpackages() -> tuple[list[str], dict[str, str]]:
    packages, package_dir = [], {}
    for top in TOP:
        for root, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if not d.startswith((".", "__")) and d not in ("build", "src")]
            if "__init__.py" in files:
                name = "clove_gym." + root.replace(os.sep, ".")
                packages.append(name)
                package_dir[name] = root
    return packages, package_dir


packages, package_dir = subpackages()

setup(
    packages=packages,
    package_dir=package_dir,
    ext_modules=[
        Extension(
            "clove_gym.native._native",
            sources=sorted(glob("native/src/*.c")),
            include_dirs=["native/src"],
            extra_compile_args=[
                "-O2",
                "-std=c11",
                "-Wall",
                "-Wextra",
                "-Wno-unused-parameter",
                "-Wno-missing-field-initializers",
            ],
        )
    ],
)
