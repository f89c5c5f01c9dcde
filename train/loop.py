"""The training loop: build the run, resume it if asked, step, log, checkpoint, stop cleanly.

``train(cfg, ...)`` is what ``damt train`` and ``python -m train`` call. The run directory holds
``config.yaml`` (resolved), ``metrics.jsonl``, ``events.jsonl``, TensorBoard events and
``checkpoints/``. A checkpoint is written every ``train.checkpoint_every_epochs`` epochs (the latest
kept, plus one every ``train.keep_every_epochs``), and before the process exits at ``--max-steps``,
at the end, or on SIGTERM/SIGINT (preemption; the step in flight finishes first).

Under ``torchrun`` (docs/scale-out.md) every rank runs the same loop on its shard of the cohort
with the objective (encoder, heads, loss weighting) wrapped in DistributedDataParallel; rank 0
alone writes the run directory, and the ranks agree every step on skipping (train/step.py) and on
stopping (a signal on any rank stops all of them after the same step).
"""

from __future__ import annotations

import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from damt.cache import MANIFEST_FILE, TARGETS_FILE, Cache
from damt.config import ConfigError, DamtConfig, dump_config, to_dict
from damt.durable import atomic_write_text
from damt.errors import NonFiniteStateError
from damt.labels import load_label_table
from damt.tasks import MultiTaskObjective
from damt.views import make_views
from train import dist
from train.checkpoint import clean_partial, latest_checkpoint, load_checkpoint, nonfinite_values, save_checkpoint
from train.data import CacheDataset, ShardedSampler, build_loader, to_device
from train.logging import Interval, MetricsLogger, NullLogger
from train.memory import resolve_checkpointing
from train.optim import Schedule, build_optimizer
from train.precision import resolve_precision
from train.state import make_state, restore_state
from train.step import StepResult, train_step


class TooManySkips(RuntimeError):
    """``train.max_consecutive_skips`` non-finite steps in a row; the message is the report."""


@dataclass
class RunResult:
    run_dir: Path
    step: int
    epoch: int                 # the epoch of the last step, counted from 1 (Trainer.epoch_number)
    stopped_by: str            # completed | max_steps | SIGTERM | SIGINT
    checkpoint: Path | None
    skipped_steps: int
    epochs: int = 0            # train.epochs, for "epoch E of N"


#: what the first stop signal prints at once (a CPU step can take half a minute)
STOP_MESSAGES = {
    "SIGINT": "damt train: stopping after this step and saving a checkpoint; "
              "press Ctrl-C again to stop without saving",
    "SIGTERM": "damt train: SIGTERM received: stopping after this step and saving a checkpoint",
}


class StopSignals:
    """Turns SIGTERM/SIGINT into a flag the loop checks after each step (a second SIGINT
    interrupts at once). The first signal says so on stderr right away (``announce``: rank 0
    only, so torchrun prints it once). Handlers are installed only in the main thread and
    restored on exit."""

    def __init__(self, announce: bool = True) -> None:
        self.received: str | None = None
        self.announce = announce
        self._old: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.received == "SIGINT" and signum == signal.SIGINT:
            raise KeyboardInterrupt
        first = self.received is None
        self.received = signal.Signals(signum).name
        if first and self.announce:
            tqdm.write(STOP_MESSAGES[self.received], file=sys.stderr)

    def __enter__(self) -> "StopSignals":
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: leave signals to whoever owns them
            self._old.clear()
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


#: stop reasons as the codes the ranks reduce with MAX (a SIGINT wins over a SIGTERM)
_STOP_CODES = (None, "SIGTERM", "SIGINT")


def contrastive_note(cfg: DamtConfig, n_subjects: int, per_rank: int, world_size: int) -> str | None:
    """Why the contrastive loss will be 0 (no negatives), or None. NT-Xent compares each sample with
    the other samples of its batch; a batch of one has none. ``per_rank``: samples of one rank per
    epoch (the sampler's length); with ``tasks.contrastive_gather`` the other ranks' samples count."""
    if not cfg.tasks.contrastive.enabled:
        return None
    batch = cfg.train.batch_per_device
    samples = min(batch, per_rank) * (world_size if cfg.tasks.contrastive_gather else 1)
    if samples >= 2:
        return None
    why = (f"the cache has {n_subjects} ok subject(s), {per_rank} per rank and epoch" if per_rank < batch
           else f"train.batch_per_device is {batch}")
    return (f"{why}: every batch holds one sample, so the contrastive task has no negatives and its loss is "
            f"0 throughout. Add subjects (or a larger batch), or set tasks.contrastive.enabled: false")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


class Trainer:
    """One run on this process's rank (the only one without torchrun)."""

    def __init__(self, cfg: DamtConfig, cache: Path, run_dir: Path, resume: bool = False,
                 allow_config_change: bool = False, device: torch.device | None = None,
                 progress: bool = True):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.dist = dist.setup(device)
        self.device = self.dist.device
        self.progress = progress and self.dist.is_main
        found = latest_checkpoint(self.ckpt_dir)
        if found is not None and not resume:
            raise ConfigError("train.out_dir", f"{self.run_dir} already holds checkpoints: pass "
                              f"--resume to continue that run, or choose another --out")
        if Cache(cache).busy() and not Cache(cache).has_targets():
            raise ConfigError("data.cache_dir", f"{cache} is still being built: a damt preprocess run holds "
                              f"it and has not finished (no {TARGETS_FILE} yet); train once it has ended")
        if not Cache(cache).exists():
            raise ConfigError("data.cache_dir", f"{cache} holds no cache (no {MANIFEST_FILE}): "
                              f"run `damt preprocess` into it, or pass --cache")
        seed_everything(cfg.train.seed)
        self.dataset = CacheDataset(Path(cache), cfg)
        self.sampler = ShardedSampler(len(self.dataset), rank=self.dist.rank,
                                      world_size=self.dist.world_size, seed=cfg.train.seed,
                                      groups=self.dataset.cohorts, balanced=cfg.loader.cohort_balanced)
        self.loader = build_loader(self.dataset, self.sampler, cfg, cfg.train.batch_per_device)
        # Each iter(loader) draws a base seed; from the global RNG that draw would make a resumed
        # run (one more iterator) diverge from a straight one wherever the RNG is used (drop path).
        # Workers reseed themselves from (seed, worker id), so a private generator changes nothing.
        self.loader.generator = torch.Generator().manual_seed(cfg.train.seed)
        self.steps_per_epoch = len(self.loader)  # the same in every epoch (the last batch is kept)
        t = self.dataset.targets
        # train.grad_checkpointing: auto needs the device: the fastest setting whose predicted
        # peak fits it (train/memory.py); every rank computes the same choice
        self.checkpointing = resolve_checkpointing(cfg, self.device, t.size("morphometry"),
                                                   t.size("radiomics"))
        # the objective (encoder + heads + tasks + weighting) is what is optimised, checkpointed
        # (its state dict) and wrapped in DDP; it keeps the name `model` of the trainer's state
        self.model = MultiTaskObjective(cfg, t.size("morphometry"), t.size("radiomics"),
                                        load_label_table(cfg.labels.table).n_classes,
                                        checkpointing=self.checkpointing["setting"]).to(self.device)
        self.forward = self._wrap(self.model)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        # the linear scaling rule sees the global batch; every rank has the same number of steps
        global_batch = cfg.train.batch_per_device * self.dist.world_size
        self.schedule = Schedule.build(cfg.optim, len(self.loader), cfg.train.epochs,
                                       global_batch=global_batch)
        self.precision = resolve_precision(cfg.train.precision, self.device)
        self.step = self.epoch = self.skipped = self.consecutive = 0
        self.saved_step = -1
        if resume and self.dist.is_main:
            clean_partial(self.ckpt_dir)  # a write that failed (full disk) left its temporary folder
        if resume and found is not None:
            self._restore(found, allow_config_change)
        elif resume and self.dist.is_main:
            print(f"damt train: no complete checkpoint in {self.ckpt_dir}; starting a new run")
        if not self.dist.is_main:  # rank 0 alone writes the run directory
            self.logger: MetricsLogger | NullLogger = NullLogger()
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.run_dir / "config.yaml", dump_config(cfg))
        # records after this step (from a run killed after its last checkpoint) are dropped
        self.logger = MetricsLogger(self.run_dir, self.step, to_dict(cfg),
                                    wandb=cfg.train.wandb, wandb_project=cfg.train.wandb_project)
        ck = self.checkpointing
        print(f"damt train: {ck['message']}", file=sys.stdout if ck["fits"] else sys.stderr)
        self.logger.event({"event": "grad_checkpointing", "step": self.step,
                           **{k: ck[k] for k in ("setting", "requested", "budget_gib", "fits",
                                                 "predicted_gib", "batch")}})
        note = contrastive_note(cfg, len(self.dataset), len(self.sampler), self.dist.world_size)
        if note:  # once, at the start: the loss would otherwise log 0.0 without a word
            print(f"damt train: note: {note}")
            self.logger.event({"event": "note", "step": self.step, "message": note})

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """What the step calls: the objective, in DDP across ranks, compiled if asked (DDP first, so
        compile sees DDP's bucketed gradient hooks)."""
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel  # noqa: PLC0415

            # The unused-parameter search walks the graph every step, so it is asked for only
            # when an enabled task leaves a parameter out (MultiTaskObjective.unreached_parameters).
            # device_ids stays None: the model sits on one device already, and with ids DDP
            # would also try to move the Views inputs, which make_views put there. No buffer
            # changes in training (instance norms keep no running statistics), so none is
            # broadcast before each forward.
            model = DistributedDataParallel(
                model, device_ids=None, broadcast_buffers=False,
                find_unused_parameters=bool(self.model.unreached_parameters()))
        return torch.compile(model) if self.cfg.train.compile else model

    def _restore(self, folder: Path, allow_config_change: bool) -> None:
        state = load_checkpoint(folder)
        changed = restore_state(state, model=self.model, optimizer=self.optimizer,
                                precision=self.precision, schedule=self.schedule,
                                sampler=self.sampler, cfg=self.cfg,
                                allow_config_change=allow_config_change)
        self.step, self.epoch = state["step"], state["epoch"]
        self.skipped, self.consecutive = state["skipped"]["total"], state["skipped"]["consecutive"]
        self.saved_step = self.step
        note = f" (config keys changed: {', '.join(changed)})" if changed else ""
        if self.dist.is_main:
            print(f"damt train: resumed {folder} at step {self.step} ({self.epoch_text()}){note}")

    def epoch_number(self) -> int:
        """The epoch of the last step taken, counted from 1 (0 before the first step). The one
        epoch number every user-facing place shows: metrics.jsonl and TensorBoard, events.jsonl,
        the progress bar and the messages. (``self.epoch`` is the loop's counter of completed
        epochs, which the checkpoint keeps for resume.)"""
        return (self.step - 1) // self.steps_per_epoch + 1 if self.step else 0

    def epoch_text(self) -> str:
        return f"epoch {self.epoch_number()} of {self.cfg.train.epochs}"

    def save(self, keep: bool = False) -> Path:
        """Rank 0 writes the checkpoint of this step; every rank returns once it is complete."""
        # every rank checks (DDP replicas hold the same parameters), so all stop together
        bad, total = nonfinite_values(self.model)
        if bad:
            raise NonFiniteStateError(
                f"the model's parameters went non-finite by step {self.step} ({bad} of {total} values NaN "
                f"or inf); no checkpoint was written, the last good one is {latest_checkpoint(self.ckpt_dir)}. "
                f"Lower optim.base_lr or check the inputs, then resume from it")
        self.saved_step = self.step
        path = self.ckpt_dir / f"step_{self.step:09d}"
        if self.dist.is_main:
            state = make_state(model=self.model, optimizer=self.optimizer,
                               precision=self.precision, schedule=self.schedule,
                               sampler=self.sampler, step=self.step, epoch=self.epoch,
                               skipped_total=self.skipped, skipped_consecutive=self.consecutive,
                               cfg=self.cfg)
            path = save_checkpoint(self.ckpt_dir, state, self.step, self.epoch, keep=keep)
        dist.barrier()  # the other ranks go on only once the checkpoint is complete on disk
        return path

    def account(self, res: StepResult, views, wait: float, interval: Interval, lr: float,
                wd: float) -> Interval:
        """Count a skip (and stop after too many), and write a metrics line when one is due."""
        # samples of all ranks (every rank has the same batch size); losses are rank 0's own
        interval.add(res.losses, res.loss, res.grad_norm, len(views.index) * self.dist.world_size,
                     wait, res.applied)
        self.consecutive = 0 if res.applied else self.consecutive + 1
        if not res.applied:
            self.skipped += 1
            ids = [str(self.dataset.subjects.at[int(i), "subject_id"]) for i in views.index.tolist()]
            report = {"event": "skipped_step", "step": self.step, "epoch": self.epoch_number(),
                      "loss": res.loss, "losses": res.losses, "grad_norm": res.grad_norm,
                      "subjects": ids, "consecutive": self.consecutive}
            self.logger.event(report)
            if self.dist.is_main:
                tqdm.write(f"damt train: non-finite step {self.step} skipped (on every rank): "
                           f"{report}")
            if self.consecutive >= self.cfg.train.max_consecutive_skips:
                raise TooManySkips(f"{self.consecutive} non-finite steps in a row; the last: "
                                   f"{report}; last checkpoint: {latest_checkpoint(self.ckpt_dir)}")
        if self.step % self.cfg.train.log_every_steps:
            return interval
        tasks = [t.name for t in self.model.tasks]
        record = {"step": self.step, "epoch": self.epoch_number()} | interval.summary(tasks) | {
            "lr": lr, "wd": wd, "skipped_steps": self.skipped}
        if self.model.weighting is not None:
            record |= {f"weight_{k}": v for k, v in self.model.weighting.effective_weights().items()}
        if self.precision.scaler is not None:
            record["loss_scale"] = float(self.precision.scaler.get_scale())
        self.logger.log(record)
        return Interval()

    def run(self, max_steps: int | None = None) -> RunResult:
        """Train until the last epoch, ``max_steps`` (a global step count) or a stop signal."""
        tc, total = self.cfg.train, self.schedule.total_steps
        bar = tqdm(total=min(total, max_steps or total), initial=self.step, unit="step",
                   disable=not self.progress, dynamic_ncols=True)
        stop_reason, interval = "completed", Interval()
        try:
            with StopSignals(announce=self.dist.is_main) as stop:
                while self.epoch < tc.epochs and stop_reason == "completed":
                    self.sampler.set_epoch(self.epoch)
                    self.dataset.set_epoch(self.epoch)
                    batches = iter(self.loader)
                    while stop_reason == "completed":
                        t0 = time.perf_counter()
                        batch = next(batches, None)
                        if batch is None:
                            break
                        wait = time.perf_counter() - t0
                        views = make_views(to_device(batch, self.device), self.cfg)
                        lr, wd = self.schedule.apply(self.optimizer, self.step)
                        res = train_step(self.forward, views, self.optimizer, self.precision,
                                         self.cfg.optim.grad_clip_norm)
                        self.step += 1
                        self.sampler.advance(len(views.index))
                        interval = self.account(res, views, wait, interval, lr, wd)
                        bar.update(1)
                        bar.set_postfix(loss=f"{res.loss:.4g}", epoch=f"{self.epoch_number()}/{tc.epochs}")
                        # a signal reaches one rank (or some): all stop after this same step
                        code = dist.max_code(_STOP_CODES.index(stop.received))
                        if code:
                            stop_reason = stop.received or _STOP_CODES[code]
                        elif max_steps is not None and self.step >= max_steps:
                            stop_reason = "max_steps"
                    if stop_reason == "completed":  # the epoch ran to its end
                        self.epoch += 1
                        if self.epoch % tc.checkpoint_every_epochs == 0 or self.epoch == tc.epochs:
                            self.save(keep=self.epoch % tc.keep_every_epochs == 0)
            path = self.save() if self.saved_step != self.step else latest_checkpoint(self.ckpt_dir)
        finally:
            bar.close()
            self.logger.close()
        return RunResult(self.run_dir, self.step, self.epoch_number(), stop_reason, path, self.skipped,
                         tc.epochs)


def train(cfg: DamtConfig, cache: Path | None = None, out: Path | None = None, resume: bool = False,
          max_steps: int | None = None, allow_config_change: bool = False, progress: bool = True,
          device: torch.device | None = None) -> RunResult:
    """Run (or resume) a training run; see :class:`Trainer` and :meth:`Trainer.run`. Under
    torchrun the process joins the group first and leaves it when the run ends."""
    finished = False
    try:
        trainer = Trainer(cfg, Path(cache or cfg.data.cache_dir), Path(out or cfg.train.out_dir),
                          resume=resume, allow_config_change=allow_config_change, device=device,
                          progress=progress)
        if max_steps is not None and trainer.step >= max_steps:
            trainer.logger.close()
            result = RunResult(trainer.run_dir, trainer.step, trainer.epoch_number(), "max_steps",
                               latest_checkpoint(trainer.ckpt_dir), trainer.skipped, cfg.train.epochs)
        else:
            result = trainer.run(max_steps)
        finished = True
        return result
    finally:
        # after a failure no barrier: the other ranks may never reach it (torchrun ends them)
        dist.teardown(wait=finished)
