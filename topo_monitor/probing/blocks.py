"""Which modules of a network are its blocks: discovery (``"auto"``) and resolution of names."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from torch import nn

__all__ = ["OUTPUT", "candidate_blocks", "resolve_blocks"]

OUTPUT = "output"
"""Name of the model's final output, the last block (relative depth 1)."""

_STRUCTURAL = re.compile(r"(Block|Bottleneck|EncoderLayer|DecoderLayer|Stage)$")
_ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
)


def candidate_blocks(model: nn.Module) -> list[str]:
    """Names of the modules that ``blocks="auto"`` considers, in definition order.

    The outermost structural blocks (class names ending in ``Block``, ``Bottleneck``,
    ``EncoderLayer``, ``DecoderLayer`` or ``Stage``: torchvision ResNets, transformers, most timm
    models) when there are any; otherwise every activation module, i.e. each hidden layer of an MLP
    or plain CNN after its nonlinearity. The final output is always added by the caller.
    """
    structural: list[str] = []
    for name, module in model.named_modules():
        if not name or any(name.startswith(outer + ".") for outer in structural):
            continue
        if _STRUCTURAL.search(type(module).__name__):
            structural.append(name)
    if structural:
        return structural
    return [name for name, m in model.named_modules() if name and isinstance(m, _ACTIVATIONS)]


def resolve_blocks(
    model: nn.Module,
    blocks: str | Iterable[str] | Callable[[nn.Module], Iterable[str | nn.Module]],
) -> list[str]:
    """Module names to hook, from ``"auto"``, a list of names, or a callable on the model."""
    if isinstance(blocks, str):
        if blocks != "auto":
            raise ValueError(
                f'blocks must be "auto", a list of module names or a callable, got {blocks!r}'
            )
        return candidate_blocks(model)
    if callable(blocks):
        by_module = {m: n for n, m in model.named_modules()}
        names = []
        for item in blocks(model):
            if isinstance(item, nn.Module):
                if item not in by_module:
                    raise ValueError(
                        f"the blocks callable returned a {type(item).__name__} "
                        "that is not a submodule of the model"
                    )
                names.append(by_module[item])
            else:
                names.append(item)
        blocks = names
    names = list(blocks)
    available = dict(model.named_modules())
    unknown = [n for n in names if n != OUTPUT and n not in available]
    if unknown:
        sample = ", ".join(repr(n) for n in list(available)[1:13])
        raise ValueError(
            f"unknown block name(s) {unknown}: blocks are names from model.named_modules(), "
            f"e.g. {sample}"
        )
    return [n for n in names if n != OUTPUT]
