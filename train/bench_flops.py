"""``damt bench flops [CONFIG]``: the forward FLOPs of one training step, per model component,
counted on the meta device without running anything.

For each setting of ``damt bench step`` (``default`` and ``original``; ``swinunetr_decoder`` on
request) the model is built on the CPU (MONAI's Swin initialisation reads tensor values, which the
meta device does not have) and moved to the meta device; one step's views (batch ``--batch``, the
config's view sizes, the seed's 566 + 72 target columns) are made on the meta device, and
``torch.utils.flop_counter.FlopCounterMode`` counts one forward of the whole step (every encoder
pass, every head, every loss). Shapes are all that is computed, so the full model takes seconds on
a laptop. Matrix products, convolutions and attention are counted (what FlopCounterMode has
formulas for); element-wise work (norms, activations, softmax) is not, as in MFU accounting.

One JSON line per setting: ``model_tflop_forward`` (the step's forward, all passes) and
``components``, TFLOP per component: ``encoder`` (all passes together), ``atlas_decoder``,
``mim_decoder``, ``<task>_head`` for the other tasks and ``losses`` (whatever the model computes
outside its modules: the losses' own products, e.g. NT-Xent's similarity matrix).
"""

from __future__ import annotations

import time
from typing import Any, Iterator

from torch.utils.flop_counter import FlopCounterMode

from damt.config import DamtConfig
from damt.labels import load_label_table
from damt.tasks import MultiTaskObjective
from damt.testing import synthetic_views
from train.bench_step import SEED_MORPHOMETRY, SEED_RADIOMICS, settings

#: how the heads of tasks are named in ``components`` (the others are ``<task>_head``)
DECODER_NAMES = {"atlas": "atlas_decoder", "mim": "mim_decoder"}


def component_name(module_path: str) -> str | None:
    """The component of a FlopCounterMode module path ('MultiTaskObjective.heads.atlas' ->
    'atlas_decoder'); None for the root and for paths below a component."""
    parts = module_path.split(".")
    if len(parts) == 2 and parts[1] == "encoder":
        return "encoder"
    if len(parts) == 3 and parts[1] == "heads":
        return DECODER_NAMES.get(parts[2], f"{parts[2]}_head")
    return None


def forward_flops(cfg: DamtConfig, batch: int = 2, n_morphometry: int = SEED_MORPHOMETRY,
                  n_radiomics: int = SEED_RADIOMICS) -> dict[str, Any]:
    """FLOPs of one training step's forward of ``cfg``'s model at ``batch``, on the meta device.

    Returns ``{"total": flops, "components": {name: flops}}``; the components sum to the total.
    The model runs in training mode (stochastic depth draws on meta tensors cost nothing).
    """
    n_classes = load_label_table(cfg.labels.table).n_classes
    model = MultiTaskObjective(cfg, n_morphometry, n_radiomics, n_classes).to("meta")
    views = synthetic_views(cfg, batch, n_morphometry, n_radiomics, n_classes, device="meta")
    with FlopCounterMode(display=False, depth=3) as counter:
        model(views)
    total = float(counter.get_total_flops())
    components: dict[str, float] = {}
    for path, ops in counter.get_flop_counts().items():
        name = component_name(path)
        if name is not None:
            components[name] = float(sum(ops.values()))
    components["losses"] = total - sum(components.values())
    return {"total": total, "components": components}


def bench_flops(cfg: DamtConfig, batch: int = 2,
                names: tuple[str, ...] = ("default", "original")) -> Iterator[dict[str, Any]]:
    """One result line per setting of ``damt bench step`` (see :func:`train.bench_step.settings`)."""
    for name, scfg in settings(cfg, names=names).items():
        start = time.perf_counter()
        counted = forward_flops(scfg, batch)
        yield {"bench": "flops", "setting": name, "batch": batch,
               "atlas_decoder": scfg.model.atlas_decoder,
               "global_crop_vox": scfg.views.global_crop_vox,
               "local_size_vox": scfg.views.local_size_vox,
               "targets": {"morphometry": SEED_MORPHOMETRY, "radiomics": SEED_RADIOMICS},
               "model_tflop_forward": counted["total"] / 1e12,
               "components": {k: v / 1e12 for k, v in counted["components"].items()},
               "seconds": time.perf_counter() - start}
