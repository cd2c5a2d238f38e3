"""SIGTERM and SIGINT while training: save between two steps, say how to resume, exit 128 + the signal."""

import logging
import signal
import threading
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.utilities import rank_zero_only

from ddpm.errors import Stopped, argument

log = logging.getLogger(__name__)


class StopCheckpoint(Checkpoint):
    """SIGTERM or SIGINT during training: the step under way is finished, `run_dir/checkpoints/last.ckpt` is saved
    (through the trainer's checkpoint IO, which writes atomically), one line says how to resume, and `Stopped` is
    raised, so that the command exits with 128 + the signal number instead of 0. A second signal (Ctrl-C twice)
    stops at once, with its own line: the step under way is not saved, and a checkpoint being written is left out
    whole (its temporary file removed), so the last one saved is what resume= continues from; a third one kills.

    Lightning's own handling is not enough: its SIGTERM handler makes the loops raise SIGTERMException, a SystemExit
    with status 0, also in the middle of a validation, when the EMA callback has swapped the averaged weights in; and
    SIGINT raises KeyboardInterrupt wherever it lands. So this callback takes both signals over once Lightning has set
    its handlers (Lightning restores the ones it found when fit ends) and stops only between two optimizer steps, where
    the periodic checkpoint is saved too, the state tests/test_faults.py resumes bitwise. A Checkpoint, so that
    Lightning calls it after the other callbacks, the EMA update of the step included."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, run_dir: str):
        self.run_dir = Path(run_dir)
        self.dirpath = self.run_dir / "checkpoints"  # where every Checkpoint callback keeps its files
        self.received: int | None = None

    def setup(self, trainer, pl_module, stage):
        self.received = None

    def _listen(self) -> None:
        if threading.current_thread() is threading.main_thread():  # the only thread that may set handlers
            for signum in self.SIGNALS:
                signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum
            return
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
        message = (f"stopped at once by a second {signal.Signals(signum).name}, without saving the step under way: "
                   f"resume with {argument('resume', self.run_dir)} from its last checkpoint")
        if rank_zero_only.rank == 0:
            log.warning(message)
        raise Stopped(message, signum)

    def on_sanity_check_start(self, trainer, pl_module):
        self._listen()

    def on_train_start(self, trainer, pl_module):
        self._listen()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # Lightning's handler has SIGTERM until this one takes over: its flag covers one that came in between.
        received = self.received or (signal.SIGTERM if trainer.received_sigterm else 0)
        if trainer.world_size > 1:  # all ranks stop after the same step, also when only rank 0 got the signal
            received = int(trainer.strategy.reduce(torch.tensor(received, device=pl_module.device), reduce_op="max"))
        accumulating = (batch_idx + 1) % trainer.accumulate_grad_batches != 0
        if not received or accumulating or 0 < trainer.max_steps <= trainer.global_step:
            return  # no signal, in the middle of a step, or the last step: that run ends as planned
        trainer.save_checkpoint(self.dirpath / "last.ckpt", weights_only=False)  # what resume=<run folder> reads
        self._stop(trainer, f"stopped at step {trainer.global_step} of {trainer.max_steps}: resume with "
                            f"{argument('resume', self.run_dir)}", received)

    def stop_if_signalled(self, trainer) -> None:
        """After fit: a signal that came with the last step or after it (in the final validation) let the run
        finish, and the process still stops as asked, so that a -m sweep does not go on to its next job."""
        if self.received:
            self._stop(trainer, f"stopped as the run finished at step {trainer.global_step} of {trainer.max_steps}: "
                                f"its checkpoints are complete", self.received)

    @staticmethod
    def _stop(trainer, message: str, signum: int) -> None:
        if trainer.is_global_zero:
            log.warning(message)
        raise Stopped(message, signum)
