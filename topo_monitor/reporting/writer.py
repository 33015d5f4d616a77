"""TopologyWriter: everything one run publishes about its records, in one place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from topo_monitor.probing.record import TopologyRecord
from topo_monitor.reporting.history import HistoryFile, history_filename
from topo_monitor.reporting.keys import PREFIX, record_scalars
from topo_monitor.reporting.loggers import FigureWriter, log_metrics, write_custom_scalars_layout

__all__ = ["TopologyWriter"]


class TopologyWriter:
    """Publishes a run's records: scalars to every logger, the TensorBoard Custom Scalars layout
    (once per run), figures (when asked) and the JSON-lines history.

    Parameters
    ----------
    owner : str
        Named in warnings (e.g. where figures go when no logger takes them).
    prefix : str
        Of the scalar names (``<prefix>/<metric>/<block>``), the layout category, the figure
        tags (``<prefix>_figures/...``) and the history file (``<prefix>_history.jsonl``): one per
        monitor of a run.

    Attributes
    ----------
    figures_at : int or None
        The step (an epoch, or a global step) at which figures were last written.
    """

    def __init__(self, owner: str = "TopologyMonitor", prefix: str = PREFIX) -> None:
        self.prefix = prefix
        self.figures = FigureWriter(owner)
        self.history_file = HistoryFile(history_filename(prefix))
        self.figures_at: int | None = None
        self._layout_written = False

    def start_run(self) -> None:
        """A new ``fit``: its loggers get the layout again."""
        self._layout_written = False

    def write(
        self,
        loggers: Sequence[Any],
        history: Sequence[TopologyRecord],
        directory: str,
        figures: bool = False,
        step: int | None = None,
    ) -> None:
        """Publish the newest record of ``history`` at ``step`` (default: its epoch), figures too
        if ``figures``; the history file in ``directory`` is brought up to ``history``."""
        record = history[-1]
        step = record.epoch if step is None else step
        log_metrics(loggers, record_scalars(record, self.prefix), step=step)
        if not self._layout_written:
            write_custom_scalars_layout(loggers, list(record.values), self.prefix)
            self._layout_written = True
        if figures:
            self.write_figures(loggers, history, directory, step)
        self.history_file.write(directory, history)

    def write_figures(
        self,
        loggers: Sequence[Any],
        history: Sequence[TopologyRecord],
        directory: str,
        step: int | None = None,
    ) -> None:
        """Draw the figures of ``history`` (see :func:`~topo_monitor.reporting.plots.
        topology_figures`) and send them to the loggers at ``step`` (default: the newest
        record's epoch)."""
        from topo_monitor.reporting.plots import topology_figures

        step = history[-1].epoch if step is None else step
        figures = topology_figures(history, self.prefix)
        self.figures.write(loggers, figures, step or 0, directory)
        self.figures_at = step
