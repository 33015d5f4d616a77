"""Why a value is missing: small typed records, aggregated into one warning per cause.

A problem names its block, its class (None: the whole cloud), the metric it took (None: every
metric of the block), a *cause* (a short fixed kind, the same for every class it hits) and a
*detail* (the words and numbers of this case). Aggregating on ``(metric, cause)`` rather than on
the text keeps one monitored epoch to one warning per cause, whatever the number of classes and
blocks, while ``record.problems`` keeps every case.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["NETWORK", "Problem", "warn_problems"]

NETWORK = "network"
"""The ``block`` of a problem of a per-network value (the functional graph)."""


@dataclass(frozen=True)
class Problem:
    """One value (or set of values) that could not be computed, and why.

    Attributes
    ----------
    block : str
        The block, or :data:`NETWORK` for a per-network value.
    metric : str or None
        The metric it took (``"PHdim"`` covers ``PHdim`` and ``PHdim_r2``); None: every metric of
        the block (or of the class's cloud) that needs what is missing.
    cause : str
        A fixed kind, e.g. ``"too_few_points"``, ``"collapsed"``, ``"nonfinite_activations"``.
    detail : str
        What happened in this case, in words, with its numbers.
    label : int or None
        The class whose cloud it was; None for the whole block.
    """

    block: str
    metric: str | None
    cause: str
    detail: str
    label: int | None = None

    def covers(self, metric: str) -> bool:
        """Whether ``metric`` (a logged name such as ``PHdim_r2``) is among what it took."""
        return self.metric is None or metric == self.metric or metric.startswith(self.metric + "_")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | Sequence[str]) -> Problem:
        """From :meth:`to_dict`, or from the ``[block, "class N: <metric>: <text>"]`` pairs of
        history files written before problems were typed (their cause is then their text)."""
        if isinstance(data, Mapping):
            return cls(**data)
        block, reason = data
        match = re.match(r"class (-?\d+): (.*)", reason)
        label, text = (int(match.group(1)), match.group(2)) if match else (None, reason)
        metric, _, rest = text.partition(": ")
        if not rest or " " in metric:
            metric, rest = None, text
        return cls(block, metric, rest, rest, label)

    @property
    def reason(self) -> str:
        """``"<metric>: <detail>"`` (the detail alone when it took every metric)."""
        return self.detail if self.metric is None else f"{self.metric}: {self.detail}"

    def __str__(self) -> str:
        return self.reason if self.label is None else f"class {self.label}: {self.reason}"


def warn_problems(problems: Iterable[Problem], where: str = "", stacklevel: int = 3) -> None:
    """One warning per (metric, cause), however many classes and blocks it hit: counts, the first
    blocks and the first case's detail in the message (a probe of 1000 small classes must not
    print a thousand lines)."""
    hits: dict[tuple[str | None, str], list[Problem]] = {}
    for problem in problems:
        hits.setdefault((problem.metric, problem.cause), []).append(problem)
    for cases in hits.values():
        blocks = sorted({p.block for p in cases})
        listed = ", ".join(repr(b) for b in blocks[:3]) + (", ..." if len(blocks) > 3 else "")
        classes = {p.label for p in cases if p.label is not None}
        first = cases[0].reason  # the numbers of the other cases are in record.problems
        if classes:
            outcome = (
                f"in {len(classes)} class(es) of {len(blocks)} block(s) ({listed}); those "
                "classes are left out of the blocks' class means (record.class_counts says how "
                "many entered, record.problems lists every case)"
            )
        else:
            outcome = (
                f"in {len(blocks)} block(s) ({listed}); recorded as NaN "
                "(record.problems lists every case)"
            )
        warnings.warn(f"topo_monitor: {where}{first}, {outcome}", stacklevel=stacklevel)
