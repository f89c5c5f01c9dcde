"""The task interface: what a pretext task declares, and the registry of tasks.

A task is a small class registered under its config name (``@register_task("rotation")``). It
declares which encoder passes it reads (:data:`ENCODINGS`), builds its head, computes its loss and
carries its weight from ``tasks.<name>`` in pipeline.yaml. Switching a task off
(``tasks.<name>.enabled: false``) or re-weighting it needs no code change: the objective
(:class:`damt.tasks.objective.MultiTaskObjective`) builds heads and encoder passes only for the
enabled tasks. This module imports neither the tasks nor the model: ``damt.model`` is the network
alone, and the tasks and the objective import it, never the other way round.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

from torch import Tensor, nn

from damt.config import ConfigError, DamtConfig
from damt.views import Views

#: encoder passes a task may read: name -> (Views field of the input, Views field of the patch
#: mask or None). The masked passes share the encoder and its normalisation with the unmasked ones.
ENCODINGS: dict[str, tuple[str, str | None]] = {
    "global": ("global1", None),
    "global_masked": ("global2", "global2_patch_mask"),
    "local": ("local", None),
    "local_masked": ("local_plain", "local_patch_mask"),  # the unrotated local view
}


@dataclass(frozen=True)
class ModelDims:
    """Sizes a head needs: the encoder's widths, the global x4 grid, and the target sizes."""

    hidden_channels: tuple[int, ...]   # x0..x4
    embed_dim: int
    stride: int                        # input voxels per x4 voxel (patch * 2**4)
    global_grid: int                   # x4 edge of a global view
    n_classes: int
    n_morphometry: int
    n_radiomics: int

    @property
    def token_dim(self) -> int:
        return self.hidden_channels[-1]


@dataclass
class Encoded:
    """One encoder pass: its input and its five normalised hidden states."""

    x_in: Tensor
    hidden: list[Tensor]

    @property
    def pooled(self) -> Tensor:
        """The deepest hidden state averaged over space: the [B, 768] token of METHOD.md."""
        return self.hidden[-1].mean(dim=(2, 3, 4))


class Task(ABC):
    """Base class. Subclasses set ``encodings`` and implement ``build_head`` and ``loss``."""

    name: str = ""
    encodings: tuple[str, ...] = ()

    def __init__(self, cfg: DamtConfig):
        self.cfg = cfg
        self.weight = float(getattr(cfg.tasks, self.name).weight)
        self.encodings = type(self).encodings  # a task may narrow it from its config

    @abstractmethod
    def build_head(self, dims: ModelDims) -> nn.Module:
        """The task's head (or decoder); the objective holds it as ``heads[<name>]``."""

    @abstractmethod
    def loss(self, head: nn.Module, enc: dict[str, Encoded], views: Views) -> Tensor:
        """The task's scalar loss (float32 []) from its head, the encoder passes it declared
        (``enc[name]`` for each name in ``encodings``), and the step's views."""


TASKS: dict[str, type[Task]] = {}


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator: make a Task available under ``tasks.<name>`` of the config."""

    def wrap(cls: type[Task]) -> type[Task]:
        if name in TASKS:
            raise ValueError(f"task {name!r} registered twice")
        bad = set(cls.encodings) - set(ENCODINGS)
        if bad:
            raise ValueError(f"task {name!r} reads unknown encoder passes {sorted(bad)}")
        cls.name = name
        TASKS[name] = cls
        return cls

    return wrap


def build_tasks(cfg: DamtConfig) -> list[Task]:
    """The enabled tasks, in registration order. ConfigError if none is enabled or a task has
    a config section but no implementation."""
    for name, sub in vars(cfg.tasks).items():
        if hasattr(sub, "enabled") and name not in TASKS:
            raise ConfigError(f"tasks.{name}", "no task is registered under this name")
    tasks = [cls(cfg) for name, cls in TASKS.items() if getattr(cfg.tasks, name).enabled]
    if not tasks:
        raise ConfigError("tasks", "every task is disabled: enable at least one")
    return tasks

