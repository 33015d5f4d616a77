"""The hooks that capture block outputs during a probe forward pass, and the state kept around it.

Hooks reduce (or copy) an output the moment it is produced: many modules' outputs are modified in
place later in the forward pass (``ReLU(inplace=True)``, residual ``+=``), so keeping a reference
would record the wrong values.
"""

from __future__ import annotations

import random
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from topo_monitor.probing.blocks import OUTPUT, named_modules

__all__ = [
    "BlockRecorder",
    "collect_clouds",
    "first_tensor",
    "model_device",
    "model_scores",
    "move_to_device",
    "preserved_state",
]


def first_tensor(output: object) -> torch.Tensor | None:
    """The tensor standing for a block's output: itself, or the first tensor in a tuple/dict.

    A recurrent layer returns ``(output, h_n)`` (``nn.RNN``, ``nn.GRU``) or
    ``(output, (h_n, c_n))`` (``nn.LSTM``): its output sequence comes first, so that is the
    tensor; HuggingFace layers likewise return their hidden states first.
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for item in output:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


_NAMED_OUTPUTS: set[tuple[str, str]] = set()  # (model class, key) already warned about


def model_scores(result: object, model_name: str = "model") -> torch.Tensor | None:
    """The tensor standing for a model's output: its class scores.

    A tensor is itself; a dict or a HuggingFace ``ModelOutput`` gives its ``logits`` entry when
    it has one, else its first tensor, with one warning per model class naming the key used (a
    ``{"features", "scores"}`` dict must not silently be measured on its features); a tuple
    gives its first tensor.
    """
    if isinstance(result, Mapping):
        logits = result.get("logits")
        if isinstance(logits, torch.Tensor):
            return logits
        for key, value in result.items():
            tensor = first_tensor(value)
            if tensor is not None:
                if (model_name, str(key)) not in _NAMED_OUTPUTS:
                    _NAMED_OUTPUTS.add((model_name, str(key)))
                    warnings.warn(
                        f"topo_monitor: {model_name} returns a dict without 'logits'; its block "
                        f"'output' (and the margin) is its first tensor, {key!r}. Pass "
                        "forward=lambda m, x: m(x)[<key>] to choose another",
                        stacklevel=3,
                    )
                return tensor
        return None
    return first_tensor(result)


def _is_packed(output: object) -> bool:
    """Whether a module returned a PackedSequence, alone or first in a tuple (as an RNN does)."""
    if isinstance(output, PackedSequence):
        return True
    return isinstance(output, tuple) and len(output) > 0 and isinstance(output[0], PackedSequence)


class BlockRecorder:
    """Forward hooks that store the reduced output of each named module, per call.

    A module called several times in one forward pass yields one block per call, named ``name``,
    ``name#2``, ``name#3``...: a weight-shared layer applied at two depths is two points of the
    depth profile. Call :meth:`next_batch` before each forward pass. Hooks are removed on exit,
    whatever happens inside.

    Attributes
    ----------
    outputs : dict[str, list[torch.Tensor]]
        Per block, the reduced outputs of every batch, in execution order of first call.
    skipped : dict[str, str]
        Blocks whose output held no tensor, with the reason.
    """

    def __init__(
        self,
        model: nn.Module,
        names: Iterable[str],
        reduce: Callable[[str, torch.Tensor], torch.Tensor],
    ) -> None:
        self.model = model
        self.names = list(names)
        self.reduce = reduce
        self.outputs: dict[str, list[torch.Tensor]] = {}
        self.skipped: dict[str, str] = {}
        self._calls: defaultdict[str, int] = defaultdict(int)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def next_batch(self) -> None:
        self._calls.clear()

    def _hook(self, name: str) -> Callable[[nn.Module, object, object], None]:
        # Inside a torch.compile'd forward the hook runs eagerly: dynamo would otherwise trace
        # the reduction (and break its graph there, with a warning per block).
        @torch.compiler.disable
        def hook(module: nn.Module, args: object, output: object) -> None:
            self._calls[name] += 1
            key = name if self._calls[name] == 1 else f"{name}#{self._calls[name]}"
            if _is_packed(output):
                # Its flat data mixes the sequences' steps; the padded form would average pads in.
                self.skipped[key] = (
                    "its output is a PackedSequence, whose steps are not one row per input: "
                    "hook a module that receives the unpacked sequences instead"
                )
                return
            tensor = first_tensor(output)
            if tensor is None or tensor.dim() < 2:
                self.skipped[key] = f"its output ({type(output).__name__}) holds no batch tensor"
                return
            if isinstance(module, nn.RNNBase) and not module.batch_first and tensor.dim() == 3:
                tensor = tensor.transpose(0, 1)  # (T, B, H), the default layout, to (B, T, H)
            self.outputs.setdefault(key, []).append(self.reduce(key, tensor))

        return hook

    def __enter__(self) -> BlockRecorder:
        modules = named_modules(self.model)
        for name in self.names:
            self._handles.append(modules[name].register_forward_hook(self._hook(name)))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Tensors of a batch (a tensor, or dicts/tuples/lists of them) moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def collect_clouds(
    model: nn.Module,
    batches: Iterable[Any],
    hooked: Iterable[str],
    reduce: Callable[[str, torch.Tensor], torch.Tensor],
    forward: Callable[[nn.Module, Any], Any] | None = None,
    on_batch: Callable[[Any], None] | None = None,
    after_first_batch: Callable[[dict[str, float]], None] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Run batches through the model and gather every hooked block's reduced outputs.

    Parameters
    ----------
    batches : iterable of model inputs
        Moved to the model's device one at a time.
    hooked : iterable of str
        Module names to hook (see :func:`resolve_blocks`).
    reduce : callable ``(block name, output) -> (B * k, C) tensor``
        ``k`` points per input, consecutive (see :class:`~topo_monitor.probing.reduction.Reducer`,
        which also records ``k`` per block); 1 for the model output.
    forward : callable ``(model, inputs) -> output``, optional
        Default ``model(**inputs)`` for a mapping of inputs (HuggingFace's convention), else
        ``model(inputs)``.
    on_batch : callable ``(batch) -> None``, optional
        Called with each batch (on the model's device) before its forward pass, e.g. the
        reducer's :meth:`~topo_monitor.probing.reduction.Reducer.see_batch`.
    after_first_batch : callable ``(bytes per input of every block) -> None``, optional
        Called once the first batch is reduced, before any other is: it may stop a pass whose
        clouds would not fit in memory (by raising).

    Returns
    -------
    clouds : dict of block name to torch.Tensor of shape (n * k, C)
        In execution order, the model's output (:data:`OUTPUT`) last.
    skipped : dict of block name to the reason it has no cloud

    The caller chooses the gradient and mode context (see :func:`preserved_state`).
    """
    device = model_device(model)
    outputs: list[torch.Tensor] = []
    with BlockRecorder(model, hooked, reduce) as recorder:
        for batch in batches:
            recorder.next_batch()
            batch = move_to_device(batch, device)
            if on_batch is not None:
                on_batch(batch)
            result = (
                forward(model, batch) if forward is not None else _default_forward(model, batch)
            )
            tensor = model_scores(result, type(model).__name__)
            if tensor is None:
                raise ValueError(
                    f"the model returned {type(result).__name__} with no tensor: pass "
                    "forward=... to select the output"
                )
            outputs.append(reduce(OUTPUT, tensor))
            if after_first_batch is not None and len(outputs) == 1:
                inputs = len(outputs[0])
                sizes = {name: _bytes(parts) / inputs for name, parts in recorder.outputs.items()}
                after_first_batch({**sizes, OUTPUT: _bytes(outputs) / inputs})
    clouds = {name: torch.cat(parts) for name, parts in recorder.outputs.items()}
    clouds[OUTPUT] = torch.cat(outputs)
    return clouds, recorder.skipped


def _bytes(tensors: Iterable[torch.Tensor]) -> float:
    return float(sum(t.numel() * t.element_size() for t in tensors))


def _default_forward(model: nn.Module, batch: Any) -> Any:
    return model(**batch) if isinstance(batch, Mapping) else model(batch)


@contextmanager
def preserved_state(model: nn.Module, grad: bool = False) -> Iterator[None]:
    """Evaluation mode (without gradients unless ``grad``), then everything back as it was.

    Restores every submodule's own ``training`` flag (users freeze parts in eval mode), and the
    torch (CPU and the model's CUDA devices), NumPy and Python random states, so that monitoring
    draws nothing from the streams training uses.
    """
    modes = [(m, m.training) for m in model.modules()]
    devices = [d.index or 0 for d in {p.device for p in model.parameters()} if d.type == "cuda"]
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002 (global stream)
    try:
        with torch.random.fork_rng(devices=devices), torch.set_grad_enabled(grad):
            model.eval()
            yield
    finally:
        for module, mode in modes:
            module.training = mode
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)
