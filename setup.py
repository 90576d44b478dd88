"""Build hooks that pyproject.toml cannot express: the package map and the C extension.

The repository keeps its fixed top-level folders (runtime/, worlds/, ...) while users import one
namespace, `clove_gym.<folder>`: every folder below with an `__init__.py` becomes a subpackage of the
implicit namespace package `clove_gym`. Every C source under native/src/ is compiled into
`clove_gym.native._native`; its pure-Python twins live in runtime/. native/init/clove_init.c becomes
the program `clove_gym/native/clove-init` beside it (the sandbox's pid 1; twin: runtime/sandbox/child.py).
"""

import os
from glob import glob

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import LinkError

CFLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]

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


class BuildWithInit(build_ext):
    """Also links native/init/clove_init.c into a program next to the extension (in place or in the
    build tree, wherever the extension goes). setuptools builds only libraries; this reuses its
    compiler. Linked statically where libc.a exists: no loader or libraries to map at exec."""

    def run(self) -> None:
        super().run()
        out_dir = os.path.dirname(self.get_ext_fullpath("clove_gym.native._native"))
        objects = self.compiler.compile(["native/init/clove_init.c"], self.build_temp, extra_postargs=CFLAGS)
        for extra in (["-static"], []):
            try:
                self.compiler.link_executable(objects, "clove-init", output_dir=out_dir, extra_postargs=extra)
                return
            except LinkError:  # no static libc: link it dynamically
                if not extra:
                    raise


packages, package_dir = subpackages()

setup(
    packages=packages,
    package_dir=package_dir,
    ext_modules=[
        Extension(
            "clove_gym.native._native",
            sources=sorted(glob("native/src/*.c")),
            include_dirs=["native/src"],
            extra_compile_args=CFLAGS,
        )
    ],
    cmdclass={"build_ext": BuildWithInit},
)
