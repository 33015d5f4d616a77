"""Publishing records to Lightning loggers: scalars to every logger, figures where images can go.

Loggers are recognised by what they can do, so no logger package is imported here: scalars go to
every logger through ``log_metrics``; figures go to TensorBoard (``add_figure``), MLflow
(``log_figure``, one PNG artifact per figure and epoch) and W&B (``log_image``), and when no logger
takes images, to PNG files in the run's directory, with one warning saying where.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from topo_monitor.reporting.keys import PREFIX, layout_pattern

__all__ = ["FigureWriter", "log_metrics", "write_custom_scalars_layout"]


def log_metrics(loggers: Iterable[Any], metrics: Mapping[str, float], step: int) -> None:
    """Finite values to every logger (NaN would break some backends' charts): the one place
    where values that could not be computed are dropped."""
    finite = {key: float(value) for key, value in metrics.items() if math.isfinite(value)}
    for logger in loggers:
        logger.log_metrics(finite, step=step)
        logger.save()


def _summary_writer(logger: Any) -> Any | None:
    """The TensorBoard ``SummaryWriter`` behind a logger, if it is one."""
    experiment = getattr(logger, "experiment", None)
    if hasattr(experiment, "add_figure") and hasattr(experiment, "add_custom_scalars"):
        return experiment
    return None


def write_custom_scalars_layout(
    loggers: Iterable[Any], metrics: Sequence[str], prefix: str = PREFIX
) -> None:
    """A TensorBoard Custom Scalars category ``prefix`` with one chart per metric, every block in
    it (each monitor of a run adds its own category)."""
    layout = {
        prefix: {metric: ["Multiline", [layout_pattern(metric, prefix)]] for metric in metrics}
    }
    for logger in loggers:
        writer = _summary_writer(logger)
        if writer is not None:
            writer.add_custom_scalars(layout)
            writer.flush()


class FigureWriter:
    """Sends matplotlib figures to every logger that takes images, else to PNG files.

    Parameters
    ----------
    owner : str
        Named in the one warning given when figures go to files.
    """

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._warned = False

    def write(
        self,
        loggers: Sequence[Any],
        figures: Mapping[str, Any],
        step: int,
        directory: str,
    ) -> list[str]:
        """Write every ``tag -> figure`` at ``step``; returns where they went (logger class
        names, or the PNG folder)."""
        destinations = []
        for logger in loggers:
            if self._to_logger(logger, figures, step):
                destinations.append(type(logger).__name__)
        if not destinations:
            destinations.append(self._to_files(figures, step, directory))
        return destinations

    @staticmethod
    def _to_logger(logger: Any, figures: Mapping[str, Any], step: int) -> bool:
        writer = _summary_writer(logger)
        if writer is not None:
            for tag, figure in figures.items():
                writer.add_figure(tag, figure, global_step=step, close=False)
            writer.flush()
            return True
        client, run_id = getattr(logger, "experiment", None), getattr(logger, "run_id", None)
        if run_id is not None and hasattr(client, "log_figure"):  # MLFlowLogger
            for tag, figure in figures.items():
                client.log_figure(run_id, figure, f"{tag}/epoch_{step:04d}.png")
            return True
        if callable(getattr(logger, "log_image", None)):  # WandbLogger
            for tag, figure in figures.items():
                logger.log_image(key=tag, images=[_rgb(figure)], step=step)
            return True
        return False

    def _to_files(self, figures: Mapping[str, Any], step: int, directory: str) -> str:
        for tag, figure in figures.items():
            folder = os.path.join(directory, *tag.split("/"))
            os.makedirs(folder, exist_ok=True)
            figure.savefig(os.path.join(folder, f"epoch_{step:04d}.png"))
        root = os.path.join(directory, next(iter(figures)).split("/")[0]) if figures else directory
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"{self.owner}: no logger takes figures, so they are written as PNG files under "
                f"{root} (TensorBoard, MLflow and W&B loggers take them; "
                "figures_every_n_epochs=None turns them off)",
                stacklevel=2,
            )
        return root


def _rgb(figure: Any) -> Any:
    """The figure rendered as an (H, W, 3) uint8 array, the image form every logger accepts."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
