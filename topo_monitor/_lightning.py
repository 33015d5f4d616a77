"""The one place that chooses between ``lightning.pytorch`` and ``pytorch_lightning``.

A Trainer only accepts callbacks derived from its own package's ``Callback``. When both packages
are installed, our callbacks derive from both base classes, so either Trainer accepts them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["CALLBACK_BASES", "pl", "rank_zero_info", "rank_zero_warn"]


def _import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


# pytorch_lightning first: it is our declared dependency (``pl`` is the package whose utilities
# the callbacks use).
_packages = [m for m in (_import("pytorch_lightning"), _import("lightning.pytorch")) if m]
if not _packages:
    raise ImportError("topo_monitor needs pytorch-lightning (>= 2.2) or lightning")

pl = _packages[0]
CALLBACK_BASES: tuple[type, ...] = tuple(m.Callback for m in _packages)

_rank_zero = importlib.import_module(pl.__name__ + ".utilities.rank_zero")
rank_zero_warn = _rank_zero.rank_zero_warn
rank_zero_info = _rank_zero.rank_zero_info
