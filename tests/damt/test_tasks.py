"""Tasks as registered components: switched off or re-weighted from the config alone."""

from __future__ import annotations

import pytest
import torch

from damt.config import ConfigError, load_config
from damt.tasks import TASKS, MultiTaskObjective, Task, build_tasks, register_task
from damt.testing import synthetic_views

# the atlas decoder is the expensive part of a tiny step; tests about wiring leave it out
CHEAP = ["tasks.atlas.enabled=false"]


def _cfg(repo, *overrides):
    return load_config(repo / "configs" / "tiny.yaml", [*overrides])


def test_seven_tasks_registered_in_method_order(repo):
    assert list(TASKS)[:7] == ["rotation", "location", "contrastive", "atlas", "morphometry",
                               "texture", "mim"]
    tasks = build_tasks(_cfg(repo))
    assert {t.name: t.weight for t in tasks} == {"rotation": 1.0, "location": 1.0, "contrastive": 1.0,
                                                "atlas": 0.5, "morphometry": 5.0, "texture": 5.0,
                                                "mim": 1.0}


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="twice"):
        @register_task("rotation")
        class Again(Task):  # noqa: F841
            encodings = ("global",)


def test_disabled_task_has_no_head_no_loss_and_no_encoder_pass(repo):
    cfg = _cfg(repo, *CHEAP, "tasks.mim.enabled=false", "tasks.location.enabled=false")
    model = MultiTaskObjective(cfg, 20, 8, 101)
    assert "mim" not in model.heads and "atlas" not in model.heads
    assert model.passes == ["global", "global_masked", "local"]  # no masked local pass without MIM
    _, losses = model(synthetic_views(cfg, 2, 20, 8, 101))
    assert set(losses) == {"rotation", "contrastive", "morphometry", "texture"}


def test_reweighting_from_the_config_changes_the_total(repo):
    cfg = _cfg(repo, *CHEAP, "tasks.texture.weight=0.0", "tasks.rotation.weight=2.5")
    torch.manual_seed(0)
    model = MultiTaskObjective(cfg, 20, 8, 101)
    with torch.no_grad():
        total, losses = model(synthetic_views(cfg, 2, 20, 8, 101))
    want = {"rotation": 2.5, "location": 1, "contrastive": 1, "morphometry": 5, "texture": 0, "mim": 1}
    assert total.item() == pytest.approx(sum(want[k] * v.item() for k, v in losses.items()), rel=1e-6)


def test_uncertainty_weighting_is_an_option(repo):
    cfg = _cfg(repo, *CHEAP, "tasks.weighting=uncertainty")
    model = MultiTaskObjective(cfg, 20, 8, 101)
    assert model.weighting is not None and model.weighting.names == [t.name for t in model.tasks]
    with torch.no_grad():
        total, losses = model(synthetic_views(cfg, 2, 20, 8, 101))
    # p = 1 at the start: every loss counts 0.5 times, plus log(2) per task
    direct = sum(0.5 * v.item() for v in losses.values()) + len(losses) * torch.log(torch.tensor(2.0)).item()
    assert total.item() == pytest.approx(direct, rel=1e-6)
    assert "weighting.params" in dict(model.named_parameters())


def test_subject_without_a_target_is_left_out_of_that_loss(repo):
    cfg = _cfg(repo, *CHEAP)
    torch.manual_seed(0)
    model = MultiTaskObjective(cfg, 20, 8, 101).eval()
    views = synthetic_views(cfg, 2, 20, 8, 101)
    views.morphometry_present[0] = False
    with torch.no_grad():
        before = model(views)[1]["morphometry"]
        views.morphometry[0] = 1e6  # the absent subject's stored values must not matter
        after = model(views)[1]["morphometry"]
        views.morphometry_present[:] = False
        none = model(views)[1]["morphometry"]
    assert before.item() == after.item() and none.item() == 0.0


def test_config_errors_name_the_key(repo):
    everything_off = [f"tasks.{name}.enabled=false" for name in list(TASKS)[:7]]
    with pytest.raises(ConfigError, match="every task is disabled"):
        build_tasks(_cfg(repo, *everything_off))
    with pytest.raises(ConfigError, match="tasks.morphometry.enabled"):
        MultiTaskObjective(_cfg(repo, *CHEAP), 0, 8, 101)  # a cache without morphometry columns
    with pytest.raises(ConfigError, match="views.local_size_vox"):
        MultiTaskObjective(_cfg(repo, "views.local_crop_vox=28", "views.local_size_vox=32"), 20, 8, 101)


def _direct_losses(model, views):
    """The seed's loss definitions (METHOD.md 'Losses', the original main.py) written out from
    the model's own encoder passes and heads."""
    import torch.nn.functional as F  # noqa: PLC0415

    enc, h = model.encode(views), model.heads
    rot_logits = torch.cat([h["rotation"](enc["global"].pooled), h["rotation"](enc["local"].pooled)])
    out = {"rotation": F.cross_entropy(rot_logits, torch.cat([views.rot_global1, views.rot_local]))}
    if "atlas" in h:
        g, loc = enc["global"], enc["local"]
        out["atlas"] = (F.cross_entropy(h["atlas"](g.hidden), views.global1_atlas)
                        + F.cross_entropy(h["atlas"](loc.hidden), views.local_atlas))

    def masked(pred, target, mask):
        return (pred - target).abs()[mask].mean()

    out["mim"] = (masked(h["mim"](enc["global_masked"].hidden[-1]), views.global2, views.global2_voxel_mask)
                  + masked(h["mim"](enc["local_masked"].hidden[-1]), views.local_plain,
                           views.local_voxel_mask))
    return out


def test_task_losses_are_the_seeds_definitions(repo):
    cfg = _cfg(repo)
    torch.manual_seed(0)
    model = MultiTaskObjective(cfg, 20, 8, 101).eval()
    views = synthetic_views(cfg, 1, 20, 8, 101)
    assert model.passes == ["global", "global_masked", "local", "local_masked"]
    with torch.no_grad():
        total, losses = model(views)
        direct = _direct_losses(model, views)
        # the local MIM pass encodes the unrotated local crop, not the rotated one
        plain = model.encoder(views.local_plain, views.local_patch_mask)
        rotated = model.encoder(views.local, views.local_patch_mask)
        enc = model.encode(views)
    for name, value in direct.items():
        assert losses[name].item() == pytest.approx(value.item(), rel=1e-5), name
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(enc["local_masked"].hidden, plain))
    assert not torch.allclose(enc["local_masked"].hidden[-1], rotated[-1], atol=1e-3)
    # the logged loss is the task's contribution to the total divided by its weight
    contributions = {"rotation": 1, "location": 1, "contrastive": 1, "atlas": 0.5, "morphometry": 5,
                     "texture": 5, "mim": 1}
    assert total.item() == pytest.approx(sum(w * losses[k].item() for k, w in contributions.items()),
                                         rel=1e-6)


def test_rotation_masked_view_option_adds_global_view_2(repo):
    import torch.nn.functional as F  # noqa: PLC0415

    cfg = _cfg(repo, *CHEAP, "tasks.rotation.masked_view=true", "tasks.mim.enabled=false",
               "tasks.contrastive.enabled=false")
    torch.manual_seed(0)
    model = MultiTaskObjective(cfg, 20, 8, 101).eval()
    assert model.passes == ["global", "global_masked", "local"]
    views = synthetic_views(cfg, 2, 20, 8, 101)
    with torch.no_grad():
        losses = model(views)[1]
        enc, head = model.encode(views), model.heads["rotation"]
        logits = torch.cat([head(enc[p].pooled) for p in ("global", "global_masked", "local")])
        want = F.cross_entropy(logits, torch.cat([views.rot_global1, views.rot_global2, views.rot_local]))
    assert losses["rotation"].item() == pytest.approx(want.item(), rel=1e-6)
    # by default the masked view's rotation is discarded: without MIM and contrastive, no masked pass
    off = MultiTaskObjective(_cfg(repo, *CHEAP, "tasks.mim.enabled=false", "tasks.contrastive.enabled=false"),
                    20, 8, 101)
    assert off.passes == ["global", "local"]


def test_atlas_dice_ce_option_is_monais_dice_ce_on_each_view(repo):
    from monai.losses import DiceCELoss  # noqa: PLC0415

    cfg = _cfg(repo, "tasks.atlas.loss=dice_ce")
    torch.manual_seed(0)
    model = MultiTaskObjective(cfg, 20, 8, 101).eval()
    views = synthetic_views(cfg, 1, 20, 8, 101)
    with torch.no_grad():
        losses = model(views)[1]
        enc, dec = model.encode(views), model.heads["atlas"]
        loss = DiceCELoss(to_onehot_y=True, softmax=True)
        want = (loss(dec(enc["global"].hidden), views.global1_atlas[:, None])
                + loss(dec(enc["local"].hidden), views.local_atlas[:, None]))
    assert losses["atlas"].item() == pytest.approx(want.item(), rel=1e-5)
    with pytest.raises(ConfigError, match="tasks.atlas.loss"):
        _cfg(repo, "tasks.atlas.loss=dice")


def test_the_model_package_knows_nothing_of_tasks():
    """damt.model is the network alone: no module of it imports damt.tasks (the objective imports
    the model, never the other way round), so no import order can break a cycle."""
    import ast  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    import damt.model  # noqa: PLC0415

    for path in Path(damt.model.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [n for n in names if n.startswith(("damt.tasks", "damt.views"))], path


def test_objective_keeps_the_checkpoint_parameter_names(repo):
    """Checkpoints written when the network and the objective were one class (DamtModel) resume:
    the objective registers the same submodules under the same names."""
    model = MultiTaskObjective(_cfg(repo, *CHEAP, "tasks.weighting=uncertainty"), 20, 8, 101)
    keys = set(model.state_dict())
    assert {k.split(".")[0] for k in keys} == {"encoder", "heads", "weighting"}
    assert "encoder.mask_token" in keys and "weighting.params" in keys
    assert any(k.startswith("encoder.swinViT.layers1.0.blocks.0.attn.qkv.") for k in keys)
    assert {k.split(".")[1] for k in keys if k.startswith("heads.")} == {t.name for t in model.tasks}
