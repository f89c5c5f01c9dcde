"""The training objective: the network, the enabled tasks, and how their losses are combined.

``MultiTaskObjective(cfg, n_morphometry, n_radiomics, n_classes)(views)`` returns the weighted total
and every task loss. It, not the network, is the module the trainer optimises and DDP wraps:
keeping the losses inside one ``forward`` lets a DDP wrapper see the whole step as one forward,
including the learned uncertainty weights (torchtitan keeps its loss apart from the model the
same way). ``damt.model`` holds only the encoder and the heads and knows nothing of tasks.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from damt.config import DamtConfig
from damt.losses import UncertaintyWeighting, fixed_total
from damt.model import MaskedSwinEncoder
from damt.tasks.base import ENCODINGS, Encoded, ModelDims, build_tasks
from damt.views import Views

# encoder passes that take inputs of one shape run as one batch (2B instead of two passes of B)
_PASS_GROUPS = (("global", "global_masked"), ("local", "local_masked"))


class MultiTaskObjective(nn.Module):
    """Encoder + task heads + loss weighting.

    State-dict keys (the checkpoint and export layout, unchanged since the network and the
    objective were one class): ``encoder.swinViT.*`` (MONAI SwinUNETR names),
    ``encoder.mask_token``, ``heads.<task>.*`` and, with uncertainty weighting,
    ``weighting.params``. ``tasks`` (a plain list, no parameters) holds the enabled tasks.
    """

    def __init__(self, cfg: DamtConfig, n_morphometry: int, n_radiomics: int, n_classes: int,
                 checkpointing: str | None = None):
        """``checkpointing``: none, layers3 or all (default: ``train.grad_checkpointing``; its
        ``auto`` needs the training device and is resolved by the trainer
        (:func:`damt.memory.choose_checkpointing`); an objective built without that, e.g. for
        export or embedding, does not checkpoint)."""
        super().__init__()
        m = cfg.model
        setting = checkpointing or cfg.train.grad_checkpointing
        self.encoder = MaskedSwinEncoder(m, grad_checkpointing="none" if setting == "auto" else setting)
        stride = m.patch_size_vox * 2 ** len(m.depths)
        self.dims = ModelDims(hidden_channels=tuple(self.encoder.out_channels), embed_dim=m.embed_dim,
                              stride=stride, global_grid=cfg.views.global_crop_vox // stride,
                              n_classes=n_classes, n_morphometry=n_morphometry,
                              n_radiomics=n_radiomics)
        self.tasks = build_tasks(cfg)
        self.heads = nn.ModuleDict({t.name: t.build_head(self.dims) for t in self.tasks})
        self.weights = {t.name: t.weight for t in self.tasks}
        self.weighting = (UncertaintyWeighting([t.name for t in self.tasks])
                          if cfg.tasks.weighting == "uncertainty" else None)
        self.passes = sorted({p for t in self.tasks for p in t.encodings})

    def unreached_parameters(self) -> list[str]:
        """Names of the parameters that no enabled task's loss depends on.

        DDP must be told to search for unused parameters (a graph walk every step) only when this
        is not empty. Heads exist only for enabled tasks, every encoder stage feeds the deepest
        hidden state that every task reads, and uncertainty weighting has one parameter per enabled
        task; only the mask token is left out, when no enabled task reads a masked pass.
        """
        masked = any(ENCODINGS[p][1] is not None for p in self.passes)
        return [] if masked else ["encoder.mask_token"]

    def encode(self, views: Views) -> dict[str, Encoded]:
        """Run the encoder passes the enabled tasks need; passes of one input size share a batch."""
        out: dict[str, Encoded] = {}
        for group in _PASS_GROUPS:
            names = [n for n in group if n in self.passes]
            if not names:
                continue
            xs, masks = [], []
            for n in names:
                x_field, mask_field = ENCODINGS[n]
                x = getattr(views, x_field)
                xs.append(x)
                masks.append(getattr(views, mask_field) if mask_field else None)
            if all(mk is None for mk in masks):
                mask = None
            else:  # an unmasked pass in a shared batch gets an all-False mask: no token anywhere
                grid = next(mk for mk in masks if mk is not None).shape
                mask = torch.cat([mk if mk is not None else torch.zeros(grid, dtype=torch.bool,
                                                                         device=xs[0].device)
                                  for mk in masks])
            hidden = self.encoder(torch.cat(xs) if len(xs) > 1 else xs[0], mask)
            for i, (n, x) in enumerate(zip(names, xs)):
                b = x.shape[0]
                out[n] = Encoded(x_in=x, hidden=[h[i * b:(i + 1) * b] for h in hidden])
        return out

    def forward(self, views: Views) -> tuple[Tensor, dict[str, Tensor]]:
        """Returns (weighted total, {task: loss}); losses are float32 scalars []."""
        enc = self.encode(views)
        losses = {t.name: t.loss(self.heads[t.name], enc, views) for t in self.tasks}
        if self.weighting is not None:
            return self.weighting(losses), losses
        return fixed_total(losses, self.weights), losses
