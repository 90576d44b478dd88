"""Scripted agents of the benchmark suites: plain `clove_sdk` programs the runner spawns as processes.

They are scripts, not modules to import: the kernel runs each as `<python> <script> <socket>`, so
`suite_helpers` is imported from the script's own directory. A package only so that wheels ship them.
"""

from pathlib import Path

AGENTS_DIR = Path(__file__).resolve().parent


def script(name: str) -> str:
    """Absolute path of the agent script `name` (e.g. "pingpong_driver.py"); raises if it is missing."""
    path = AGENTS_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"no agent script {name!r} in {AGENTS_DIR}")
    return str(path)
