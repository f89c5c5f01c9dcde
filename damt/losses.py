"""The loss functions of the seven tasks and the two ways of combining them (METHOD.md 'Losses').

Every function computes in float32 whatever dtype its inputs have: under bf16/fp16 autocast the
heads return low-precision tensors, and sums over 10^6 voxels or exponentials of similarities
lose too much in 8-10 bit mantissas.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from damt.parallel import is_distributed


def gather_with_grad(z: Tensor) -> tuple[Tensor, int]:
    """``z`` [b, D] of every rank concatenated in rank order, and where this rank's rows start.

    Outside an initialised process group of several ranks: ``(z, 0)``. The gather is
    torch.distributed.nn's, whose backward sends each rank the gradient of its own rows from every
    rank's loss, so the negatives from other ranks train their encoders too. Every rank must pass
    the same b (the sampler gives every rank the same batch sizes).
    """
    if not is_distributed():
        return z, 0
    import torch.distributed as dist  # noqa: PLC0415
    from torch.distributed.nn.functional import all_gather  # noqa: PLC0415

    return torch.cat(all_gather(z.contiguous())), dist.get_rank() * z.shape[0]


def nt_xent(z1: Tensor, z2: Tensor, temperature: float, rows: slice | None = None) -> Tensor:
    """NT-Xent (SimCLR) between two views, for any batch size B >= 1.

    z1, z2: [B, D] projections of the two views of the same B samples. Each of the 2B embeddings has
    its partner as the positive and the other 2B - 2 as negatives; the loss is the mean of the 2B
    cross-entropies. Nothing depends on a fixed batch size (the original precomputed its mask for
    one size and crashed on the last, smaller batch). With B = 1 there are no negatives and the
    loss is exactly 0.

    rows: the samples whose two cross-entropies are averaged (default all). With batches gathered
    from every rank, each rank takes its own samples' rows against all negatives; DDP's mean over
    ranks then equals the loss of the whole global batch in one process.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"nt_xent needs two [B, D] tensors of one shape, got {tuple(z1.shape)} "
                         f"and {tuple(z2.shape)}")
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = (z @ z.T) / temperature
    # a sample is never its own negative: -inf on the diagonal drops it from the softmax
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    if rows is None:
        return F.cross_entropy(sim, partner)
    own = torch.arange(b, device=z.device)[rows]
    own = torch.cat([own, own + b])
    return F.cross_entropy(sim[own], partner[own])


def masked_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean absolute error over the voxels where ``mask`` is True (MIM: masked voxels only).

    pred, target: [B, C, ...]; mask: bool, broadcastable to pred. 0 (with a graph) if nothing is
    masked, so a mask ratio of 0 trains nothing instead of dividing by zero.
    """
    mask = mask.expand_as(pred)
    err = (pred.float() - target.float()).abs()
    n = mask.sum()
    return torch.where(mask, err, torch.zeros_like(err)).sum() / n.clamp(min=1)


def present_l1(pred: Tensor, target: Tensor, present: Tensor) -> Tensor:
    """Mean absolute error over the (sample, column) entries whose target is present.

    A subject without a target (``present`` False) is left out of the loss, never compared to a
    placeholder zero. The target is replaced before the subtraction where absent, so a NaN stored
    for an absent value can not reach the gradient through ``where``.
    """
    pred = pred.float()
    safe = torch.where(present, target.float(), pred.detach())
    err = (pred - safe).abs()
    return torch.where(present, err, torch.zeros_like(err)).sum() / present.sum().clamp(min=1)


def fixed_total(losses: dict[str, Tensor], weights: dict[str, float]) -> Tensor:
    """Weighted sum of the task losses with the fixed weights of the config."""
    return sum(weights[name] * loss for name, loss in losses.items())


class UncertaintyWeighting(nn.Module):
    """Learned task weighting (the seed's "AutoWeightedLoss", Liebel & Koerner 2018).

    total = sum_i 0.5 / p_i^2 * L_i + log(1 + p_i^2) with one learnable p_i per task, p_i = 1 at
    the start. The log term keeps p_i from growing without bound; it uses log(1 + p^2) rather than
    log(p^2) so the total stays >= 0 and bounded below. Parameters live in the model so they are
    optimised (without weight decay) and checkpointed with it.
    """

    def __init__(self, names: list[str]):
        super().__init__()
        self.names = list(names)
        self.params = nn.Parameter(torch.ones(len(self.names)))

    def forward(self, losses: dict[str, Tensor]) -> Tensor:
        p2 = self.params.float() ** 2
        total = torch.zeros((), device=self.params.device)
        for i, name in enumerate(self.names):
            total = total + 0.5 / p2[i] * losses[name] + torch.log1p(p2[i])
        return total

    def effective_weights(self) -> dict[str, float]:
        """The current multiplier 0.5 / p_i^2 of each task loss (for logging)."""
        p2 = self.params.detach().float() ** 2
        return {name: float(0.5 / p2[i]) for i, name in enumerate(self.names)}


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy in float32 (classification and per-voxel segmentation), the mean over
    samples (and voxels). logits [N, C] or [B, C, D, H, W]; labels int64 [N] or [B, D, H, W]."""
    return F.cross_entropy(logits.float(), labels)


def dice_ce(logits: Tensor, labels: Tensor) -> Tensor:
    """MONAI's DiceCELoss (softmax, one-hot labels; Dice + CE with weight 1 each), as the original
    code trained the atlas task. logits [B, C, D, H, W]; labels int64 [B, D, H, W]. float32."""
    from monai.losses import DiceCELoss  # noqa: PLC0415  (only with tasks.atlas.loss: dice_ce)

    return DiceCELoss(to_onehot_y=True, softmax=True)(logits.float(), labels.unsqueeze(1))

