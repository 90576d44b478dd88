"""Hardware parameters: the one file `hw analyze` writes and the RTL build reads.

Kept as a frozen dataclass stored as JSON so the golden model, the RTL generators and the reports all
size themselves from the same numbers; `validate()` refuses values the RTL cannot implement.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

PARAMS_VERSION = 1


class ParamsError(ValueError):
    """Parameters that are missing, malformed or that the hardware cannot implement."""


@dataclass(frozen=True)
class HwParams:
    """Sizes of the scheduler + mailbox core (see SPEC.md §2 for what each one bounds)."""

    agents: int = 8  # agent slots N (power of two so agent ids are exactly log2 N bits)
    depth: int = 8  # per-agent request queue depth D (pending requests counted per agent)
    quantum: int = 1  # DRR quantum per agent turn, in requests (all agents; weights scale it)
    weights: tuple[int, ...] = ()  # per-agent weight multiplying the quantum; () = all 1
    max_cost: int = 1  # largest request cost (DRR/bucket units); must fit one quantum and one burst
    bucket_rate: int = 0  # token refill per cycle in 1/256 cost units; 0 = unlimited (no quota)
    bucket_burst: int = 8  # bucket capacity in cost units
    slots: int = 32  # shared message store entries M (power of two)
    mbox_depth: int = 8  # per-agent mailbox depth (message pointers queued per receiver)
    payload_bits: int = 16  # message payload (handle) width W

    @property
    def agent_bits(self) -> int:
        return max(1, (self.agents - 1).bit_length())

    @property
    def slot_bits(self) -> int:
        return max(1, (self.slots - 1).bit_length())

    @property
    def cost_bits(self) -> int:
        return max(1, self.max_cost.bit_length())

    def weight(self, agent: int) -> int:
        return self.weights[agent] if self.weights else 1

    def validate(self) -> HwParams:
        """Return self, or raise ParamsError naming the first value the RTL cannot implement."""

        def power_of_two(name: str, value: int, lo: int, hi: int) -> None:
            if not (lo <= value <= hi) or value & (value - 1):
                raise ParamsError(f"{name}={value}: must be a power of two in [{lo}, {hi}]")

        power_of_two("agents", self.agents, 2, 64)
        power_of_two("slots", self.slots, 2, 1024)
        power_of_two("depth", self.depth, 1, 1024)
        power_of_two("mbox_depth", self.mbox_depth, 1, 1024)
        if not 1 <= self.payload_bits <= 32:
            raise ParamsError(
                f"payload_bits={self.payload_bits}: must be in [1, 32] (a handle, not the message)"
            )
        for name in ("quantum", "max_cost", "bucket_burst"):
            if not 1 <= getattr(self, name) <= 255:
                raise ParamsError(f"{name}={getattr(self, name)}: must be in [1, 255]")
        if not 0 <= self.bucket_rate <= 256 * 255:
            raise ParamsError(f"bucket_rate={self.bucket_rate}: must be in [0, 65280] (1/256 units)")
        if self.weights and len(self.weights) != self.agents:
            raise ParamsError(f"weights: {len(self.weights)} given for {self.agents} agents")
        if any(not 1 <= w <= 15 for w in self.weights):
            raise ParamsError(f"weights={list(self.weights)}: each must be in [1, 15]")
        min_turn = self.quantum * min(self.weights or (1,))
        if self.max_cost > min_turn or self.max_cost > self.bucket_burst:
            raise ParamsError(
                f"max_cost={self.max_cost}: must be <= quantum*min(weight)={min_turn} and <= bucket_burst="
                f"{self.bucket_burst}, so every visit can serve its head in the cycle it starts (SPEC.md §3)"
            )
        return self

    def to_json(self) -> str:
        d = asdict(self)
        d["weights"] = list(self.weights)
        return json.dumps({"version": PARAMS_VERSION, "params": d}, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = "<params>") -> HwParams:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ParamsError(f"{where}: not JSON ({e})") from None
        if not isinstance(doc, dict) or doc.get("version") != PARAMS_VERSION or "params" not in doc:
            raise ParamsError(f"{where}: expected {{'version': {PARAMS_VERSION}, 'params': {{...}}}}")
        known = {f.name for f in fields(cls)}
        raw = doc["params"]
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ParamsError(f"{where}: unknown parameter(s) {unknown}")
        try:
            raw = dict(raw, weights=tuple(raw.get("weights", ())))
            return cls(**raw).validate()
        except TypeError as e:
            raise ParamsError(f"{where}: {e}") from None

    def save(self, path: str | Path) -> Path:
        return write_atomic(Path(path), self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> HwParams:
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as e:
            raise ParamsError(f"{p}: cannot read parameter file ({e.strerror})") from None
        return cls.from_json(text, str(p))


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write via a temporary file + rename so readers never see a half-written report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path
