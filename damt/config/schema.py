"""The typed config tree. Each component owns one section; every field has a doc and a unit.

Defaults here are METHOD.md's and equal ``pipeline.yaml`` (a test keeps them equal). Where a field
has a unit it is in the name too (``spacing_mm``, ``crop_size_vox``) so a YAML reader sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Optional

from damt.config.targets import TargetsConfig
from damt.config.validate import ConfigError, section, setting


@dataclass(frozen=True)
class DataConfig:
    """Where the cohorts are and which FreeSurfer files make a subject."""

    # io: which input files a subject is made from enters its input hash (a store is rebuilt when
    # its source files change), so these keys need not be part of the preprocess hash
    SCOPE: ClassVar[str] = "io"

    inputs: list[str] = setting([], "cohort roots (SUBJECTS_DIR layout); 'NAME=PATH' names the cohort, "
                                "otherwise the folder name is the cohort name")
    cache_dir: str = setting("cache", "cache folder written by preprocess and read by train", unit="path")
    image_names: list[str] = setting(["brainmask"], "T1 file stems under mri/, first found wins")
    fallback_image_name: str = setting("norm", "T1 used when the image is a binary 0/1 mask "
                                       "(see preprocess.binary_mask_fallback)")
    parcellation_name: str = setting("aparc+aseg", "parcellation file stem under mri/")
    extensions: list[str] = setting([".mgz", ".nii.gz", ".nii"], "file endings tried, in order")
    exclude: list[str] = setting(["fsaverage*", "lh.EC_average", "rh.EC_average"],
                                 "glob patterns of folder names under a root that are not subjects")


@dataclass(frozen=True)
class PreprocessConfig:
    """METHOD.md preprocessing steps 1-6 and the store layout."""

    orientation: str = setting("RAS", "axis codes the volume is reoriented to (a permutation/flip, "
                               "no interpolation) so every cohort shares one frame", scope="store")
    foreground_threshold: float = setting(0.0, "image values above this are foreground (brain)",
                                          unit="input intensity", lo=0.0, scope="store")
    crop_margin_vox: int = setting(2, "margin kept around the foreground box", unit="voxels", lo=0,
                                   hi=64, scope="store")
    spacing_mm: float = setting(1.25, "isotropic output spacing", unit="mm", lo=0.25, hi=8.0, scope="store")
    image_interp_order: int = setting(1, "spline order for the image (1 = trilinear, 3 = cubic); "
                                      "the parcellation is always nearest", lo=1, hi=3, scope="store")
    min_shape_vox: int = setting(128, "each axis is zero-padded (centred) to at least this",
                                 unit="voxels", lo=1, hi=1024, scope="store")
    percentile_low: float = setting(0.05, "intensity percentile mapped to 0 (inside the brain)",
                                    unit="percent", lo=0.0, hi=100.0, scope="store")
    percentile_high: float = setting(99.95, "intensity percentile mapped to 1 (inside the brain)",
                                     unit="percent", lo=0.0, hi=100.0, scope="store")
    unknown_labels: Literal["background", "fail"] = setting(
        "background", "parcellation ids missing from the label table: map to background and count "
                      "them, or fail the subject", scope="store")
    binary_mask_fallback: bool = setting(True, "if the image is a binary 0/1 mask, use "
                                         "data.fallback_image_name masked by it; otherwise fail",
                                         scope="store")
    grid_atol_mm: float = setting(0.001, "tolerance when checking that image and parcellation "
                                  "share one grid", unit="mm", lo=0.0, scope="store")
    max_voxels: int = setting(512 ** 3, "largest voxel count an input file's header may declare; a "
                              "larger file is refused as too_large before its data is read (a small "
                              ".mgz can decompress to GBs). Not part of the store hash",
                              unit="voxels", lo=1, scope="cache")
    # Store layout (damt.cache.layout): not in the preprocess hash; `damt cache relayout` applies a
    # change to an existing cache from its own stores.
    chunk_vox: Optional[int] = setting(
        None, "cube edge of the image/atlas chunks; null = slabs across the longest axis (slab_vox)",
        unit="voxels", lo=8, hi=512, scope="cache")
    slab_vox: int = setting(16, "slab thickness along the volume's longest axis (chunk_vox: null)",
                            unit="voxels", lo=1, hi=512, scope="cache")
    codec: Literal["lz4hc", "lz4", "zstd", "none"] = setting(
        "lz4hc", "Blosc codec of image and atlas, byte shuffle (none = raw chunks, ~6x the disk; "
                 "see docs/data-loading.md)", scope="cache")
    clevel: int = setting(5, "Blosc compression level", lo=0, hi=9, scope="cache")

    def _check(self, path: str) -> None:
        if self.percentile_low >= self.percentile_high:
            raise ConfigError(f"{path}.percentile_low", "must be below percentile_high")
        if len(self.orientation) != 3 or sorted(self.orientation.upper()) not in (
                sorted(c) for c in _ALL_AXCODES):
            raise ConfigError(f"{path}.orientation", f"expected 3 axis codes like RAS or LIA, "
                              f"got {self.orientation!r}")


_ALL_AXCODES = [a + b + c for a in "LR" for b in "PA" for c in "IS"]


@dataclass(frozen=True)
class LabelsConfig:
    """The versioned FreeSurfer-id -> class table."""

    SCOPE: ClassVar[str] = "store"  # the table's bytes are part of the preprocess hash

    table: str = setting("damt-v1", "a built-in table name (damt-v1) or a path to a table TSV")


@dataclass(frozen=True)
class DaskConfig:
    """How the preprocessing graph runs."""

    SCOPE: ClassVar[str] = "io"  # how fast preprocessing runs, never what it writes

    workers: int = setting(2, "local worker processes when no scheduler is given", lo=1, hi=4096)
    threads_per_worker: int = setting(1, "threads per worker (one subject per thread)", lo=1, hi=256)
    scheduler: Optional[str] = setting(None, "address of a dask.distributed scheduler "
                                       "(tcp://host:8786); null starts a local cluster")
    memory_limit_gb: float = setting(4.0, "memory limit per local worker", unit="GiB", lo=0.5)
    retries: int = setting(2, "retries of a subject after a transient I/O error (never after a "
                           "deterministic input error)", lo=0, hi=20)
    manifest_every_s: float = setting(30.0, "driver rewrites the manifest at most this often while "
                                      "running", unit="s", lo=0.0)


@dataclass(frozen=True)
class ViewsConfig:
    """The random views made at training time (METHOD.md 'Views and targets')."""

    SCOPE: ClassVar[str] = "run"

    global_crop_vox: int = setting(128, "global crop edge", unit="voxels", lo=8)
    local_crop_vox: int = setting(56, "local crop edge before resizing", unit="voxels", lo=4)
    local_size_vox: int = setting(64, "local crop edge after resizing", unit="voxels", lo=4)
    location_grid: int = setting(3, "location classes = grid x grid over views.location_axes",
                                 lo=2, hi=8)
    location_axes: list[int] = setting([0, 2], "the two volume axes the location grid splits, label "
                                       "= bin(first) * grid + bin(second); the cache is RAS, so "
                                       "[0, 2] is the original's coronal grid (left-right x "
                                       "inferior-superior)", lo=0, hi=2)
    mim_block_vox: int = setting(16, "masked-image-modelling block edge", unit="voxels", lo=2)
    mim_mask_ratio: float = setting(0.75, "fraction of blocks masked", unit="fraction", lo=0.0, hi=1.0)

    def _check(self, path: str) -> None:
        if len(self.location_axes) != 2 or self.location_axes[0] == self.location_axes[1]:
            raise ConfigError(f"{path}.location_axes", f"expected two different axes of 0, 1, 2, "
                              f"got {self.location_axes}")
        if self.local_crop_vox > self.global_crop_vox:
            raise ConfigError(f"{path}.local_crop_vox", "must not exceed global_crop_vox")
        for name in ("global_crop_vox", "local_size_vox"):
            if getattr(self, name) % self.mim_block_vox:
                raise ConfigError(f"{path}.{name}", f"must be a multiple of mim_block_vox "
                                  f"({self.mim_block_vox})")


@dataclass(frozen=True)
class ModelConfig:
    """MONAI SwinTransformer encoder sizes and head sizes (METHOD.md 'Model')."""

    SCOPE: ClassVar[str] = "run"

    embed_dim: int = setting(48, "channels of the first stage", lo=1)
    patch_size_vox: int = setting(2, "patch edge of the patch embedding", unit="voxels", lo=1)
    window_size_vox: int = setting(7, "attention window edge", unit="patches", lo=1)
    depths: list[int] = setting([2, 2, 18, 2], "Swin blocks per stage", lo=1)
    num_heads: list[int] = setting([3, 6, 12, 24], "attention heads per stage", lo=1)
    mlp_ratio: float = setting(4.0, "MLP hidden width / embed width", lo=0.5)
    drop_path_rate: float = setting(0.1, "stochastic depth rate of the Swin blocks (the "
                                    "original's 0.1)", lo=0.0, hi=1.0)
    contrastive_dim: int = setting(512, "contrastive projection width", lo=1)
    regression_channels: int = setting(64, "Conv3d channels of the morphometry and texture heads "
                                       "(before their FC layer)", lo=1)
    sdpa_attention: bool = setting(True, "window attention through torch's "
                                   "scaled_dot_product_attention in training too (MONAI's own "
                                   "use_flash_attention applies only without autograd); same maths")
    atlas_decoder: Literal["convdecoder", "swinunetr"] = setting(
        "convdecoder", "convdecoder: the original's light decoder (x4..x0 skips, ~0.27 TFLOP per "
                       "step); swinunetr: MONAI SwinUNETR's full decoder, which also reads the input "
                       "image (~12x the FLOPs; see docs/method.md)")
    channels_last: bool = setting(False, "feed the atlas decoder's convolutions channels-last "
                                  "(NDHWC) activations (parameters stay contiguous); measured no "
                                  "gain on a CPU (docs/benchmarks.md), same maths")

    def _check(self, path: str) -> None:
        if len(self.depths) != len(self.num_heads):
            raise ConfigError(f"{path}.num_heads", "needs one entry per stage of depths")
        if len(self.depths) != 4:
            raise ConfigError(f"{path}.depths", "MONAI's SwinTransformer has exactly 4 stages")
        if self.embed_dim % 12:
            raise ConfigError(f"{path}.embed_dim", "must be a multiple of 12 (MONAI SwinUNETR's "
                              "feature_size rule, so the encoder exports to SwinUNETR)")
        for i, heads in enumerate(self.num_heads):
            if (self.embed_dim * 2 ** i) % heads:
                raise ConfigError(f"{path}.num_heads[{i}]", f"must divide the stage width "
                                  f"{self.embed_dim * 2 ** i}")


@dataclass(frozen=True)
class TaskConfig:
    """One pretext task: on/off and its loss weight."""

    SCOPE: ClassVar[str] = "run"

    enabled: bool = setting(True, "train this task")
    weight: float = setting(1.0, "fixed loss weight", lo=0.0)


@dataclass(frozen=True)
class RotationTaskConfig(TaskConfig):
    """Rotation classification: on/off, weight, and which views it reads."""

    masked_view: bool = setting(False, "also classify the rotation of the masked global view 2 "
                                "(the seed discards its label)")


@dataclass(frozen=True)
class AtlasTaskConfig(TaskConfig):
    """Atlas segmentation: on/off, weight, and its per-view loss."""

    weight: float = setting(0.5, "fixed loss weight (on the sum of the global and the local loss)",
                            lo=0.0)
    loss: Literal["ce", "dice_ce"] = setting("ce", "per-view loss: cross-entropy (the seed's "
                                             "document) or MONAI's DiceCELoss (the original code)")


def _task(weight: float) -> TaskConfig:
    return TaskConfig(enabled=True, weight=weight)


@dataclass(frozen=True)
class TasksConfig:
    """The seven pretext tasks (METHOD.md 'Losses')."""

    SCOPE: ClassVar[str] = "run"

    weighting: Literal["fixed", "uncertainty"] = setting("fixed", "fixed weights, or learned "
                                                         "uncertainty weighting (AutoWeightedLoss)")
    contrastive_temperature: float = setting(0.5, "NT-Xent temperature", lo=1e-6)
    contrastive_gather: bool = setting(False, "under DDP, NT-Xent negatives from every rank's batch "
                                       "(all_gather with gradient), not only this rank's")
    rotation: RotationTaskConfig = section(RotationTaskConfig, "rotation classification, one CE "
                                           "over global view 1 and the local view")
    location: TaskConfig = section(lambda: _task(1.0), "location classification of the local crop")
    contrastive: TaskConfig = section(lambda: _task(1.0), "NT-Xent between the two global views")
    atlas: AtlasTaskConfig = section(AtlasTaskConfig, "101-class segmentation, global + local")
    morphometry: TaskConfig = section(lambda: _task(5.0), "L1 regression of FreeSurfer morphometry")
    texture: TaskConfig = section(lambda: _task(5.0), "L1 regression of radiomics texture")
    mim: TaskConfig = section(lambda: _task(1.0), "L1 reconstruction of masked voxels, global + "
                              "local")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear scaling, warm-up, cosine lr and cosine weight decay."""

    SCOPE: ClassVar[str] = "run"

    base_lr: float = setting(5.0e-4, "learning rate at lr_reference_batch (linear scaling rule)",
                             unit="1/step", lo=0.0)
    lr_reference_batch: int = setting(256, "global batch at which base_lr applies", unit="samples", lo=1)
    warmup_epochs: float = setting(5.0, "linear warm-up length", unit="epochs", lo=0.0)
    warmup_start_lr: float = setting(1.0e-6, "learning rate at step 0", lo=0.0)
    final_lr: float = setting(1.0e-7, "learning rate at the end of the cosine", lo=0.0)
    weight_decay_start: float = setting(0.04, "weight decay at step 0 (cosine schedule)", lo=0.0)
    weight_decay_end: float = setting(0.4, "weight decay at the last step", lo=0.0)
    grad_clip_norm: float = setting(1.0, "global gradient-norm clip (0 = off)", lo=0.0)
    betas: list[float] = setting([0.9, 0.999], "AdamW betas", lo=0.0, hi=1.0)


@dataclass(frozen=True)
class TrainConfig:
    """The training run: length, batch, precision, checkpoints, data loading."""

    epochs: int = setting(301, "training length", unit="epochs", lo=1, scope="run")
    batch_per_device: int = setting(2, "samples per device per step", unit="samples", lo=1, scope="run")
    seed: int = setting(0, "seed of every random draw (samples, init)", lo=0, hi=2 ** 32 - 1, scope="run")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = setting(
        "auto", "auto = bf16 autocast where supported, fp32 on CPU; fp16 uses a GradScaler", scope="run")
    # recomputation gives the same activations: a memory/speed choice per device, free on resume
    grad_checkpointing: Literal["auto", "none", "layers3", "all"] = setting(
        "auto", "recompute Swin activations in the backward pass: none, the deep stage only "
                "(layers3, 18 of the seed's 24 blocks), all stages, or auto = the fastest that the "
                "predicted peak memory fits (docs/training.md)", scope="io")
    memory_budget_gib: Optional[float] = setting(
        None, "device memory that grad_checkpointing: auto fits into (a margin of 2 GiB is kept); "
              "null = the GPU's total memory (on a CPU: no checkpointing)", unit="GiB", lo=1.0, scope="io")
    checkpoint_every_epochs: int = setting(1, "latest checkpoint refresh", unit="epochs", lo=1, scope="io")
    keep_every_epochs: int = setting(20, "also keep a copy every N epochs", unit="epochs", lo=1, scope="io")
    max_consecutive_skips: int = setting(10, "non-finite steps in a row that stop the run", lo=1, scope="io")
    log_every_steps: int = setting(10, "metrics.jsonl / TensorBoard interval", unit="steps", lo=1, scope="io")
    out_dir: str = setting("runs/damt", "run directory (config.yaml, metrics.jsonl, TensorBoard "
                           "events, checkpoints/); --out overrides", unit="path", scope="io")
    compile: bool = setting(False, "torch.compile the model (GPU; first steps are slow)", scope="run")
    wandb: bool = setting(False, "also log to Weights & Biases (needs the wandb extra)", scope="io")
    wandb_project: str = setting("damt", "W&B project name when train.wandb is true", scope="io")


@dataclass(frozen=True)
class LoaderConfig:
    """Streaming crops from the cache to the training device."""

    num_workers: int = setting(4, "data-loader worker processes per rank", lo=0, scope="io")
    prefetch_factor: int = setting(2, "batches prefetched per worker", lo=1, scope="io")
    pin_memory: bool = setting(True, "pin host memory (only with a GPU)", scope="io")
    cohort_balanced: bool = setting(False, "sample cohorts equally often instead of subjects", scope="run")
    reader: Literal["tensorstore", "zarr"] = setting(
        "tensorstore", "library that reads crops from the zarr v3 stores (tensorstore: ~2x less "
                       "CPU per sample than zarr-python; see docs/data-loading.md)", scope="io")


@dataclass(frozen=True)
class QcConfig:
    """`damt qc`: the dataset QC report (outlier rule, montage) and `--verify` (docs/qc.md)."""

    SCOPE: ClassVar[str] = "io"  # reports only; no store and no run depends on them

    out_dir: Optional[str] = setting(None, "report folder (qc_report.html, qc_subjects.csv, "
                                     "qc_outliers.csv); null = <cache>/qc; --out overrides", unit="path")
    z_threshold: float = setting(3.5, "flag a subject when a metric's robust z (median, MAD x 1.4826) "
                                 "exceeds this in absolute value", lo=0.5)
    min_subjects: int = setting(20, "fewest ok subjects with a value before a metric is scored in a "
                                "group (a median and MAD of fewer flag noise; the report warns with n)", lo=3)
    z_scope: Literal["all", "cohort", "by"] = setting(
        "all", "z-scores over all ok subjects, within each cohort, or within each stratum of "
               "damt qc --csv FILE --by COLUMN (sites, scanners, age groups)")
    volume_structures: list[str] = setting(
        ["Lateral-Ventricle", "Inf-Lat-Vent", "Hippocampus", "Amygdala", "Thalamus",
         "Cerebral-White-Matter", "Cerebellum-Cortex"],
        "key structures whose volumes are scored; each sums the classes whose name contains it "
        "(Left- and Right- together)")
    target_outliers: bool = setting(True, "also score every morphometry and radiomics column "
                                    "(raw values, present entries only)")
    target_z_threshold: float = setting(6.0, "threshold for target columns: with ~400 columns a "
                                        "subject would cross 3.5 in some column by chance", lo=0.5)
    montage_max_flagged: int = setting(48, "most flagged subjects in the montage (largest |z| first)",
                                       lo=0)
    montage_sample: int = setting(12, "unflagged ok subjects drawn at random for the montage", lo=0)
    seed: int = setting(0, "seed of the montage sample", lo=0, hi=2 ** 32 - 1)
    workers: int = setting(4, "threads reading stores (I/O bound)", lo=1, hi=256)


@dataclass(frozen=True)
class DamtConfig:
    """The whole pipeline.yaml."""

    data: DataConfig = section(DataConfig)
    preprocess: PreprocessConfig = section(PreprocessConfig)
    labels: LabelsConfig = section(LabelsConfig)
    targets: TargetsConfig = section(TargetsConfig)
    dask: DaskConfig = section(DaskConfig)
    views: ViewsConfig = section(ViewsConfig)
    model: ModelConfig = section(ModelConfig)
    tasks: TasksConfig = section(TasksConfig)
    optim: OptimConfig = section(OptimConfig)
    train: TrainConfig = section(TrainConfig)
    loader: LoaderConfig = section(LoaderConfig)
    qc: QcConfig = section(QcConfig)

    def _check(self, path: str) -> None:
        if self.views.global_crop_vox > self.preprocess.min_shape_vox:
            raise ConfigError("views.global_crop_vox", "must not exceed preprocess.min_shape_vox "
                              "(a crop must fit every padded volume)")
        if self.views.mim_block_vox % self.model.patch_size_vox:
            raise ConfigError("views.mim_block_vox", f"must be a multiple of model.patch_size_vox "
                              f"({self.model.patch_size_vox}): masks are expanded to the patch grid")
        stride = self.model.patch_size_vox * 2 ** len(self.model.depths)
        for name in ("global_crop_vox", "local_size_vox"):
            if getattr(self.views, name) % stride:
                raise ConfigError(f"views.{name}", f"must be a multiple of patch_size_vox * "
                                  f"2**stages = {stride} for the Swin encoder")
