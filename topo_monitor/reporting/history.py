"""The JSON-lines history: one record per line, readable by any tool, complete after a resume."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from topo_monitor.probing.record import TopologyRecord

__all__ = ["HISTORY_FILENAME", "HistoryFile", "history_filename", "read_history"]

HISTORY_FILENAME = "topology_history.jsonl"


def history_filename(prefix: str = "topology") -> str:
    """``<prefix>_history.jsonl``: one file per monitor of a run (``topology_history.jsonl`` for
    the default one)."""
    return f"{prefix}_history.jsonl"


class HistoryFile:
    """Keeps ``<directory>/topology_history.jsonl`` equal to a growing list of records.

    The newest record is appended; the whole file is rewritten the first time a path is written
    (a new run, a resume from a checkpoint whose history it holds): complete and consistent, at a
    constant cost per record.
    """

    def __init__(self, filename: str = HISTORY_FILENAME) -> None:
        self.filename = filename
        self._written: tuple[str, int] | None = None  # (path, records in it)

    def write(self, directory: str, records: Sequence[TopologyRecord]) -> str:
        """Bring the file in ``directory`` up to ``records``; returns its path."""
        path = os.path.join(directory, self.filename)
        if self._written == (path, len(records) - 1):
            with open(path, "a") as f:
                f.write(json.dumps(records[-1].to_dict()) + "\n")
        else:
            os.makedirs(directory, exist_ok=True)
            with open(path + ".tmp", "w") as f:
                for record in records:
                    f.write(json.dumps(record.to_dict()) + "\n")
            os.replace(path + ".tmp", path)
        self._written = (path, len(records))
        return path


def read_history(path: str | os.PathLike) -> list[TopologyRecord]:
    """The records of a history file (``null`` read back as NaN)."""
    with open(path) as f:
        return [TopologyRecord.from_dict(json.loads(line)) for line in f if line.strip()]
