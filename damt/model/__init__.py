"""The DAMT network: one masked Swin encoder (:mod:`damt.model.encoder`) and the heads and decoders
the tasks put on it (:mod:`damt.model.heads`).

This package is the network alone: it knows nothing of tasks, views or losses. The training
objective that puts the enabled tasks' heads on the encoder and weights their losses is
:class:`damt.tasks.MultiTaskObjective`; embedding and export use the encoder by itself.
"""

from __future__ import annotations

from damt.model.encoder import MaskedSwinEncoder, SdpaWindowAttention, use_sdpa_attention
from damt.model.heads import ConvDecoder, LinearHead, MIMDecoder, RegressionHead, SwinUNETRDecoder

__all__ = ["ConvDecoder", "LinearHead", "MIMDecoder", "MaskedSwinEncoder", "RegressionHead",
           "SdpaWindowAttention", "SwinUNETRDecoder", "use_sdpa_attention"]
