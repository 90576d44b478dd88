"""Find the first K set bits of a word, lane by lane: the selection inside the K-wide scheduler.

Two structures with the same result (lane k = one-hot of the (k+1)-th set bit, or zero), because which
one is faster depends on the FPGA (SPEC.md §8 records the measurement):

* `chain`: K lowest-one extractions in a row (x & -x, then clear it). Each is one carry chain, and
  bit p of extraction k+1 only waits for bits <= p of extraction k, so the chains overlap as a
  wavefront instead of adding up.
* `prefix`: the rank of every bit (set bits below it, saturated at K) as thermometer codes combined
  in a parallel-prefix tree of AND/OR logic (no carry chains); lane k is the set bit of rank k.
* `rank` (`segment_ranks`): uses the word's structure. It is K + 1 segments of N bits, and bit i of
  the segments, read downwards, is agent i's queue count as a thermometer; so the set bits before
  segment j are a sum of N small numbers read off the registers (no prefix over the word), and the
  rank of bit (j, i) is that sum plus the set bits below i in segment j alone.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Signal, Value
from clove_gym.sim.params import ParamsError

STRUCTURES = ("chain", "prefix", "rank")
# Widest K each selection is built at. `chain` (K carry chains in a row) and `prefix` (a tree of
# O(K^2)-gate thermometer adders over (K+1)N bits) were already slower than `rank` at K = 8 and grow
# worse with K; above 8 only `rank` is built and scoreboarded in the suite (SPEC.md §8).
MAX_WIDTH = {"chain": 8, "prefix": 8, "rank": 16}


def check_structure(structure: str, width: int) -> str:
    """Return `structure`, or raise ParamsError (before synthesis) when it is unknown or not built at
    this width."""
    if structure not in STRUCTURES:
        raise ParamsError(f"structure {structure!r}: expected one of {list(STRUCTURES)}")
    if width > MAX_WIDTH[structure]:
        raise ParamsError(
            f"structure {structure!r} with width={width}: built up to width {MAX_WIDTH[structure]}"
            " (it does not scale; SPEC.md §8); use 'rank'"
        )
    return structure


def thermometer_value(bits: list[Value]) -> Value:
    """Binary value of a thermometer code (bits[v] = value > v): AND/OR logic, no adder."""
    if not bits:
        return Const(0, 1)
    width = len(bits).bit_length()
    edges = [bits[v - 1] & (~bits[v] if v < len(bits) else 1) for v in range(1, len(bits) + 1)]
    return Cat(Cat(edges[v - 1] for v in range(1, len(bits) + 1) if v >> b & 1).any() for b in range(width))


def popcount(bits: list[Value]) -> Value:
    """Number of set bits (an adder tree; the operands are a few bits wide)."""
    bits = list(bits) or [Const(0, 1)]
    while len(bits) > 1:
        bits = [a + b for a, b in zip(bits[::2], bits[1::2], strict=False)] + bits[len(bits) & ~1 :]
    return bits[0]


def segment_ranks(
    m: Module, segs: list[Value], before: list[list[Value]], n: int
) -> tuple[list[list[Signal]], Signal]:
    """rank[j][i] = set bits before bit i of segment j; and the total. `before[j][i]` is the number of
    set bits of column i in segments < j (j = 0 .. len(segs)): the caller reads it off its registers."""
    starts = []
    for j in range(len(segs) + 1):
        start = Signal(range(n * len(segs) + 1), name=f"seg{j}_start")
        m.d.comb += start.eq(popcount(before[j]))
        starts.append(start)
    ranks = []
    for j, seg in enumerate(segs):
        row = []
        for i in range(n):
            r = Signal(range(n * len(segs) + 1), name=f"rank{j}_{i}")
            m.d.comb += r.eq(starts[j] + popcount([seg[x] for x in range(i)]))
            row.append(r)
        ranks.append(row)
    return ranks, starts[-1]


def select_lanes(m: Module, word: Value, width: int, lanes: int, structure: str) -> list[Signal]:
    """`lanes` one-hot (or zero) vectors of `width` bits: the first `lanes` set bits of `word`, in order."""
    if structure == "chain":
        return _chain(m, word, width, lanes)
    if structure == "prefix":
        return _prefix(m, word, width, lanes)
    if structure == "rank":
        raise ValueError("structure 'rank' needs the segment counts: use segment_ranks")
    raise ValueError(f"structure {structure!r}: expected one of {STRUCTURES}")


def _chain(m: Module, word: Value, width: int, lanes: int) -> list[Signal]:
    out, rest = [], word
    for k in range(lanes):
        low = Signal(width, name=f"lane{k}")
        m.d.comb += low.eq(rest & (~rest + 1))  # the lowest set bit alone
        nxt = Signal(width, name=f"rest{k + 1}")
        m.d.comb += nxt.eq(rest & ~low)
        out.append(low)
        rest = nxt
    return out


def _sat_add(a: list[Value], b: list[Value]) -> list[Value]:
    """Saturating sum of two thermometer codes (bit m = value > m): c > m iff a > m, b > m or, for
    some x, a > x and b > m - 1 - x."""
    k = len(a)
    return [
        a[i] | b[i] | Cat(a[x] & b[i - 1 - x] for x in range(i)).any() if i else a[0] | b[0] for i in range(k)
    ]


def _prefix(m: Module, word: Value, width: int, lanes: int) -> list[Signal]:
    # inclusive prefix (Sklansky): after the tree, incl[p] = set bits in word[0..p] (saturated)
    # codes saturate at lanes + 1, so "exactly lanes set bits" (the last lane) stays distinguishable
    incl: list[list[Value]] = [[word[p]] + [Const(0)] * lanes for p in range(width)]
    span = 1
    while span < width:
        nxt = list(incl)
        for p in range(width):
            if p & span:
                base = (p & ~(2 * span - 1)) + span - 1  # the last element of the left block
                nxt[p] = _sat_add(incl[base], incl[p])
        for p in range(width):
            if p & span:
                th = Signal(lanes + 1, name=f"pfx{span}_{p}")
                m.d.comb += th.eq(Cat(nxt[p]))
                nxt[p] = [th[i] for i in range(lanes + 1)]
        incl, span = nxt, span * 2
    out = []
    for k in range(lanes):
        lane = Signal(width, name=f"lane{k}")
        # the bit of exclusive rank k: set, with exactly k + 1 set bits up to and including it
        bits = []
        for p in range(width):
            reach = incl[p][k]  # > k set bits up to p: at least k + 1
            bits.append(word[p] & reach & ~incl[p][k + 1])
        m.d.comb += lane.eq(Cat(bits))
        out.append(lane)
    return out
