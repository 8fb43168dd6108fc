"""What the demo shows while it runs: one-line messages through :mod:`logging` (logger
``grelu_caduceus.demo``) and training progress as a tqdm bar of steps."""

from __future__ import annotations

import contextlib
import logging
import sys

log = logging.getLogger("grelu_caduceus.demo")

# metrics shown next to a progress bar, when Lightning has them
SHOWN_METRICS = ("train_loss", "train_loss_step", "val_loss", "val_accuracy", "val_auroc")


@contextlib.contextmanager
def console_messages(stream=None):
    """Print the demo's messages as ``[demo HH:MM:SS] message`` lines on ``stream`` (default
    stdout) while the block runs; the logger's handlers, level and propagation are restored after."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(logging.Formatter("[demo %(asctime)s] %(message)s", datefmt="%H:%M:%S"))
    saved = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(saved[0])
        log.propagate = saved[1]


def step_progress(name: str, total_steps: int):
    """A Lightning callback drawing a tqdm bar of training steps ``name: i/total_steps`` with the
    latest losses on stderr; a resumed run starts the bar at its step. Where stderr is not a
    terminal (a log file) the bar is redrawn at most every 30 s."""
    import pytorch_lightning as pl
    from tqdm.auto import tqdm

    class StepProgress(pl.Callback):
        def __init__(self):
            self.bar = None

        def on_train_start(self, trainer, pl_module):
            self.bar = tqdm(total=total_steps, initial=trainer.global_step, desc=name, unit="step",
                            mininterval=0.5 if sys.stderr.isatty() else 30.0)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            shown = {k: f"{float(v):.4f}" for k, v in trainer.callback_metrics.items() if k in SHOWN_METRICS}
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(trainer.global_step - self.bar.n)

        def _close(self, *args):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

        on_train_end = on_exception = _close

    return StepProgress()


__all__ = ["console_messages", "log", "step_progress"]
