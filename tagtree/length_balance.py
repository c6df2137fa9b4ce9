"""Keep a selection's mean length near the pool's: swaps that cost the objective least.

Coverage-driven selection drifts in length: on MT-Bench every category but extraction is
shorter than the pool's mean (299 characters, median 185), so four picks from four
categories averaged 0.73x the pool's length; the old first-coverage bonus made picks 1.5x
longer. ``balance_length`` repairs a greedy selection whose mean length falls outside
[pool / band, pool * band]: it swaps a pick for a pool instance of the same group (the
sampler passes each row's primary node on the top level, so the top level keeps what it
covered) whose length moves the mean toward the band, choosing each time the swap that loses
the least objective (exactly: F(S - i + j) - F(S), with i taken out by ``Block.drop``),
per unit of length moved unless a swap lands inside the band. It stops once inside, after
``max_swaps``, or at once when no ``max_swaps`` swaps could get there (the sampler then
steers the greedy with a length bonus first: ``TagsSampler._length_weighted``). The greedy's
(1 - 1/e) bound is for the objective without the band; each swap gives up exactly the
objective it says, and a selection already in the band is returned untouched.
"""

from __future__ import annotations

import numpy as np

from tagtree.greedy import Objective


def length_ratio(lengths: np.ndarray, rows: np.ndarray) -> float:
    """Mean length of ``rows`` over the pool's mean (nan for an empty selection or pool)."""
    pool = float(np.mean(lengths)) if len(lengths) else 0.0
    if not len(rows) or pool <= 0:
        return float("nan")
    return float(np.mean(lengths[rows])) / pool


def balance_length(obj: Objective, order: np.ndarray, lengths: np.ndarray, band: float,
                   groups: np.ndarray, *, max_swaps: int = 256, removals: int = 8,
                   max_partners: int = 4096) -> tuple[np.ndarray, int]:
    """(order with swapped picks in their places, number of swaps). ``groups``: (n,) the row's
    swap group (-1 = none: such picks are not swapped, such rows not taken); ``removals``:
    picks tried per swap, the most extreme in the wrong direction; ``max_partners``: pool rows
    tried per pick (evenly spaced over its group when there are more)."""
    order = np.asarray(order, dtype=np.int64).copy()
    lengths = np.asarray(lengths, dtype=np.float64)
    k = len(order)
    pool_mean = float(lengths.mean()) if len(lengths) else 0.0
    if k == 0 or band <= 1 or pool_mean <= 0:
        return order, 0
    lo, hi = k * pool_mean / band, k * pool_mean * band
    total = float(lengths[order].sum())
    selected = np.zeros(len(lengths), dtype=bool)
    selected[order] = True
    locked = np.zeros(len(lengths), dtype=bool)  # swapped-in rows stay: no cycles
    if not _reachable(lengths, selected, lo - total if total < lo else total - hi,
                      1.0 if total < lo else -1.0, max_swaps):
        return order, 0  # more than max_swaps swaps away even with the most extreme rows
    by_group = _members(groups)
    swaps = 0
    while not lo <= total <= hi and swaps < max_swaps:
        need = 1.0 if total < lo else -1.0
        obj.set_selection(order)
        picks = [b.X[order].tocsc() if b.kind == "facility" else None for b in obj.blocks]
        free = np.flatnonzero(~locked[order] & (groups[order] >= 0))
        tried = free[np.argsort(need * lengths[order[free]], kind="stable")[:removals]]
        best = None  # (lands in band, score, position, row, new total)
        for pos in tried:
            i = int(order[pos])
            part = by_group.get(int(groups[i]), np.empty(0, np.int64))
            part = part[~selected[part] & (need * (lengths[part] - lengths[i]) > 0)]
            if not part.size:
                continue
            if part.size > max_partners:
                part = part[np.linspace(0, part.size - 1, max_partners).astype(np.int64)]
            undo = [b.drop(i, int(pos), p) for b, p in zip(obj.blocks, picks, strict=True)]
            delta = obj.gains(part) - obj.gains(np.array([i]))[0]  # F(S - i + j) - F(S)
            for b, u in zip(obj.blocks, undo, strict=True):
                b.restore(u)
            new_total = total - lengths[i] + lengths[part]
            inside = (new_total >= lo) & (new_total <= hi)
            if inside.any():  # the cheapest swap that lands inside
                cand = np.flatnonzero(inside)
                j = int(cand[np.argmax(delta[cand])])
                key = (True, float(delta[j]))
            else:  # no overshoot past the far edge; cheapest per unit of length moved
                ok = np.flatnonzero(new_total <= hi if need > 0 else new_total >= lo)
                if not ok.size:
                    continue
                moved = need * (new_total[ok] - total)
                j = int(ok[np.argmax(delta[ok] / moved)])
                key = (False, float(delta[j] / (need * (new_total[j] - total))))
            if best is None or key > best[:2]:
                best = (*key, int(pos), int(part[j]), float(new_total[j]))
        if best is None:
            break
        _, _, pos, j, total = best
        selected[order[pos]] = False
        selected[j] = locked[j] = True
        order[pos] = j
        swaps += 1
    return order, swaps


def _reachable(lengths: np.ndarray, selected: np.ndarray, gap: float, need: float,
                swaps: int) -> bool:
    """Whether ``swaps`` swaps could close ``gap`` at all: the longest unpicked rows for the
    shortest picks (or the other way round), groups ignored, an upper bound."""
    ins = np.sort(need * lengths[~selected])[::-1][:swaps]
    outs = np.sort(need * lengths[selected])[:swaps]
    m = min(len(ins), len(outs))
    moves = np.maximum(ins[:m] - outs[:m], 0.0)
    return float(moves.sum()) >= gap


def _members(groups: np.ndarray) -> dict[int, np.ndarray]:
    groups = np.asarray(groups, dtype=np.int64)
    idx = np.argsort(groups, kind="stable")
    keys, starts = np.unique(groups[idx], return_index=True)
    return {int(g): rows for g, rows in zip(keys, np.split(idx, starts[1:]), strict=True) if g >= 0}
