"""DAMT: domain-aware multi-task self-supervised pretraining of a 3D Swin encoder on brain MRI.

The ``damt`` package is the side-effect-free library (config, I/O, label table, cache format,
geometry). The two stages live in the ``preprocess`` and ``train`` packages.
"""

__version__ = "0.1.0"
