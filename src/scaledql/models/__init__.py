"""Networks: encoders (Nature CNN, IMPALA, GroupNorm ResNets), spatial embeddings, the
torso (encoder → projection → feature norm), game heads."""

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
from scaledql.models.torso import Torso, TorsoOutput, TorsoSpec

__all__ = [
    "ENCODER_NAMES",
    "RESNET_LAYOUTS",
    "MultiGameHeads",
    "NetworkOutput",
    "ScaledQNetwork",
    "SpatialEmbedding",
    "Torso",
    "TorsoOutput",
    "TorsoSpec",
    "canonical_encoder_name",
    "encoder_param_counts",
    "make_encoder",
]
