"""Networks: encoders (Nature CNN, IMPALA, GroupNorm ResNets), spatial embeddings, game heads."""

from scaledql.models.encoders import (
    ENCODER_NAMES,
    RESNET_LAYOUTS,
    canonical_encoder_name,
    encoder_param_counts,
    make_encoder,
)
from scaledql.models.heads import MultiGameHeads
from scaledql.models.network import NetworkOutput, ScaledQNetwork
from scaledql.models.spatial import SpatialEmbedding

__all__ = [
    "ENCODER_NAMES",
    "RESNET_LAYOUTS",
    "MultiGameHeads",
    "NetworkOutput",
    "ScaledQNetwork",
    "SpatialEmbedding",
    "canonical_encoder_name",
    "encoder_param_counts",
    "make_encoder",
]
