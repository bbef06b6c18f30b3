"""Patient splits: every patient in exactly one split, the splits' shares of tumour slices (and hence of
every verdict, which the builder balances on them) close to the target fractions, seeded."""
from __future__ import annotations

import numpy as np

from ..coco import SPLITS

DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)


def split_patients(
    tumour_counts: dict[str, int],
    healthy_counts: dict[str, int] | None = None,
    *,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    min_tumour_patients: int = 2,
) -> dict[str, str]:
    """patient -> split. Greedy on the split whose share of tumour slices lags its target most, patients in
    descending order of tumour slices (seeded tie-break). Each split gets at least ``min_tumour_patients``
    patients with tumour slices when there are enough (an injection needs a donor from another patient of
    the same split)."""
    if len(fractions) != len(SPLITS) or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}.")
    healthy_counts = healthy_counts or {}
    patients = sorted(set(tumour_counts) | set(healthy_counts))
    if not patients:
        return {}
    rng = np.random.default_rng(seed)
    order = [patients[i] for i in rng.permutation(len(patients))]
    order.sort(key=lambda p: (-tumour_counts.get(p, 0), -healthy_counts.get(p, 0)))  # stable: seeded ties

    def weight(p: str) -> float:
        # tumour slices drive every verdict's count; healthy slices break ties for tumour-free patients
        return tumour_counts.get(p, 0) + 1e-3 * healthy_counts.get(p, 0)

    total = sum(weight(p) for p in patients)
    assigned: dict[str, str] = {}
    load = {s: 0.0 for s in SPLITS}
    # seed the smaller splits with tumour patients first, so none ends up without donors
    tumour_patients = [p for p in order if tumour_counts.get(p, 0) > 0]
    wanted = {s: min_tumour_patients if f > 0 else 0 for s, f in zip(SPLITS, fractions)}
    if len(tumour_patients) >= sum(wanted.values()):
        # from the smallest tumour patients upwards, so the big ones stay free for the greedy pass
        pool = list(reversed(tumour_patients))
        for split in (s for s in SPLITS[::-1] if wanted[s]):
            for _ in range(wanted[split]):
                p = pool.pop(0)
                assigned[p] = split
                load[split] += weight(p)
    for p in order:
        if p in assigned:
            continue
        deficits = {s: f * total - load[s] for s, f in zip(SPLITS, fractions) if f > 0}
        split = max(deficits, key=lambda s: (deficits[s], -SPLITS.index(s)))
        assigned[p] = split
        load[split] += weight(p)
    return assigned
