"""Publishing records: Lightning loggers, the JSON-lines history, and figures (matplotlib is
imported only when a figure is drawn: import ``topo_monitor.reporting.plots`` for the figures)."""

from topo_monitor.reporting.history import HISTORY_FILENAME, HistoryFile, read_history
from topo_monitor.reporting.keys import record_scalars, scalar_key, split_key
from topo_monitor.reporting.loggers import FigureWriter, log_metrics, write_custom_scalars_layout
from topo_monitor.reporting.writer import TopologyWriter

__all__ = [
    "HISTORY_FILENAME",
    "FigureWriter",
    "HistoryFile",
    "TopologyWriter",
    "log_metrics",
    "read_history",
    "record_scalars",
    "scalar_key",
    "split_key",
    "write_custom_scalars_layout",
]
