"""Which modules of a network are its blocks: discovery (``"auto"``) and resolution of names.

``blocks="auto"`` reads the structure of the network: the units a network repeats (residual,
inverted-residual, MBConv, dense and transformer blocks, DenseNet transitions, HuggingFace
``BertLayer``/``GPT2Block``/``LlamaDecoderLayer``...) are modules of one class built two or more
times and held in lists (``nn.Sequential``, ``nn.ModuleList``), each holding layers of its own.
See :func:`candidate_blocks`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable

from torch import nn

__all__ = ["OUTPUT", "candidate_blocks", "named_modules", "resolve_blocks"]

OUTPUT = "output"
"""Name of the model's final output, the last block (relative depth 1)."""

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_NAMED = re.compile(r"(Block|Bottleneck|EncoderLayer|DecoderLayer|Stage)$")
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
_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


_COMPILED = re.compile(r"(^|\.)_orig_mod(?=\.|$)")


def named_modules(model: nn.Module) -> dict[str, nn.Module]:
    """``model.named_modules()`` under the names the user wrote, in order.

    ``torch.compile`` wraps a module in an ``OptimizedModule`` holding it as ``_orig_mod``: the
    compiled module's blocks would read ``net._orig_mod.1``. Here they read ``net.1``, the name
    stands for the original module (not its wrapper), and the hooks fire inside the compiled
    forward as in the eager one.
    """
    modules: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        modules[_COMPILED.sub("", name).lstrip(".")] = module  # the inner module wins
    return modules


def _has_own_layers(module: nn.Module) -> bool:
    """Whether ``module`` may be a block: it holds submodules and parameters, and is more than
    a plain list of modules.

    A plain ``nn.Sequential``/``nn.ModuleList``/``nn.ModuleDict`` (the class itself, not a
    subclass) only groups modules: a ResNet or EfficientNet stage is such a list, and its blocks
    are the units. A single layer (``Linear``, ``Conv2d``, a norm) has no submodules: a stack of
    them is a plain MLP or CNN, whose hidden layers are its activations.
    """
    return (
        type(module) not in _CONTAINERS
        and next(module.children(), None) is not None
        and next(module.parameters(), None) is not None
    )


def _units(model: nn.Module) -> list[str]:
    """The outermost repeated or conventionally named units, in definition order.

    Repetition is counted over the whole model, not per list, which keeps the stages that hold a
    single block (EfficientNet-B0's first and last MBConv stages). Only modules held in a list
    count: a LightningModule's EMA copy, a distillation teacher or a BYOL target network is its
    network a second time, as an attribute, and their blocks are the units, not the networks.
    """
    modules = named_modules(model)

    def listed(name: str) -> bool:
        return isinstance(modules[name.rpartition(".")[0]], _CONTAINERS)

    candidates = [(n, m) for n, m in modules.items() if n and _has_own_layers(m)]
    counts = Counter(type(m) for n, m in candidates if listed(n))
    units: list[str] = []
    for name, module in candidates:  # pre-order: a unit's descendants follow it directly
        if units and name.startswith(units[-1] + "."):
            continue
        if (counts[type(module)] >= 2 and listed(name)) or _NAMED.search(type(module).__name__):
            units.append(name)
    return units


def candidate_blocks(model: nn.Module) -> list[str]:
    """Names of the modules that ``blocks="auto"`` monitors, in definition order.

    The first of these three that finds any module:

    1. **Units**: modules with parameters and submodules of their own (a plain ``nn.Sequential``,
       ``nn.ModuleList`` or ``nn.ModuleDict`` is looked through, never a unit) that either

       a. are held in an ``nn.Sequential``/``nn.ModuleList``/``nn.ModuleDict`` (subclasses
          included), with at least one other module of their class so held anywhere in the
          model; or
       b. have a class name ending in ``Block``, ``Bottleneck``, ``EncoderLayer``,
          ``DecoderLayer`` or ``Stage`` (hand-written and timm models),

       the outermost ones only: a unit inside a unit is not another block, so a model gets one
       level, never a stage and its blocks. This gives ResNet's ``BasicBlock``/``Bottleneck``
       (its stages are plain ``Sequential`` lists), MobileNetV2's 17 ``InvertedResidual`` with
       its first and last ``Conv2dNormActivation``, EfficientNet's ``MBConv`` with its first and
       last ``Conv2dNormActivation``, ConvNeXt's ``CNBlock``, ViT's ``EncoderBlock``, DenseNet's
       dense blocks and transitions (not the dense layers inside), ``nn.TransformerEncoderLayer``,
       and HuggingFace's ``BertLayer``, ``GPT2Block``, ``LlamaDecoderLayer``.
    2. **Activation modules** (``nn.ReLU``, ``nn.GELU``, ...): each hidden layer of an MLP or
       plain CNN (VGG) after its nonlinearity.
    3. **Linear and convolution layers but the last one defined** (taken to be the head, whose
       output is the model output): the hidden layers of a model that applies its
       nonlinearities as functions (``F.relu``), recorded before the nonlinearity, since a
       function cannot be hooked.

    Recurrent layers (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``) that are not inside a unit are blocks
    too, whichever of the three applies: their output sequence. The model's final output is
    added by the caller, as block :data:`OUTPUT`. An empty list means that "auto" found no
    hidden block. Modules that the forward pass never calls (a head used only in training mode)
    are dropped when measured.
    """
    modules = [(name, module) for name, module in named_modules(model).items() if name]
    units = _units(model)

    def outside_units(name: str) -> bool:
        return not any(name.startswith(unit + ".") for unit in units)

    recurrent = [name for name, m in modules if isinstance(m, nn.RNNBase) and outside_units(name)]
    hidden = units or [name for name, m in modules if isinstance(m, _ACTIVATIONS)]
    if not hidden:
        hidden = [name for name, m in modules if isinstance(m, _LAYERS)][:-1]
    order = {name: i for i, (name, _) in enumerate(modules)}
    return sorted({*recurrent, *hidden}, key=order.__getitem__)


def resolve_blocks(
    model: nn.Module,
    blocks: str | Iterable[str] | Callable[[nn.Module], Iterable[str | nn.Module]],
) -> list[str]:
    """Module names to hook, from ``"auto"``, a list of names, or a callable on the model.

    A name given twice is an error: it would be hooked twice and measured as two blocks.
    """
    if isinstance(blocks, str):
        if blocks != "auto":
            raise ValueError(
                f'blocks must be "auto", a list of module names or a callable, got {blocks!r}'
            )
        return candidate_blocks(model)
    if callable(blocks):
        # a compiled module's wrapper and the module it wraps go by the same name
        by_module = {m: _COMPILED.sub("", n).lstrip(".") for n, m in model.named_modules()}
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
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise ValueError(
            f"block name(s) {repeated} given more than once: list each block once (a module "
            "called several times per forward pass is measured at each call anyway)"
        )
    available = named_modules(model)
    unknown = [n for n in names if n != OUTPUT and n not in available]
    if unknown:
        sample = ", ".join(repr(n) for n in list(available)[1:13])
        raise ValueError(
            f"unknown block name(s) {unknown}: blocks are names from model.named_modules(), "
            f"e.g. {sample}"
        )
    return [n for n in names if n != OUTPUT]
