"""DAMT: domain-aware multi-task self-supervised pretraining of a 3D Swin encoder on brain MRI.

The ``damt`` package is the side-effect-free library (config, I/O, label table, the cache contract,
geometry, model and tasks). The two stages live in the ``preprocess`` and ``train`` packages and
meet only through ``damt.cache``; ``damt.app`` (the command line, the demo) joins them.
"""

__version__ = "0.1.0"
