"""Build hook for the C fast paths: everything else is declared in pyproject.toml.

setuptools' pyproject support for ext-modules is still experimental, so the one
extension is declared here. Every C source under native/src/ is compiled into
`clove_gym.native._native`; its pure-Python twins live in runtime/.
"""

from glob import glob

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "clove_gym.native._native",
            sources=sorted(glob("native/src/*.c")),
            include_dirs=["native/src"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
