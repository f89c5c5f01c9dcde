"""Pretext tasks as registered components, and the objective that combines them.

:mod:`damt.tasks.base` holds the interface (``Task``, ``register_task``, ``ENCODINGS``),
:mod:`damt.tasks.pretext` the seven built-in tasks (registered on import, in METHOD.md order) and
:mod:`damt.tasks.objective` the :class:`MultiTaskObjective` the trainer optimises. Every submodule
imports what it needs from its siblings directly, so the order of the imports below is free.
"""

from damt.tasks import pretext  # noqa: F401  (registers the built-in tasks)
from damt.tasks.base import ENCODINGS, TASKS, Encoded, ModelDims, Task, build_tasks, register_task
from damt.tasks.objective import MultiTaskObjective

__all__ = ["ENCODINGS", "TASKS", "Encoded", "ModelDims", "MultiTaskObjective", "Task", "build_tasks",
           "register_task"]
