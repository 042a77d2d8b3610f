"""A step's training hooks: the runtime's StepContext seen through the ML core's ``Hooks``.

Its own module because both the in-process training step (engine/ml/steps.py) and the
``accelerate launch`` side (engine/ml/launch.py) build them; neither imports the other.
"""
from __future__ import annotations

from engine.runtime.context import StepContext

from .train import Hooks


def step_hooks(ctx: StepContext) -> Hooks:
    """Events, progress and the stop flag of ``ctx`` as the trainer's callbacks."""
    return Hooks(
        emit=lambda type, **p: ctx.emit(type, **p),
        progress=lambda n, total, message=None: ctx.progress(n, total, message, unit="step"),
        should_stop=lambda: ctx.stop_requested,
    )
