"""Networks: encoders (Nature CNN, IMPALA, GroupNorm ResNets), spatial embeddings, game heads."""

from scaledql.models.encoders import ENCODER_NAMES, canonical_encoder_name, make_encoder
from scaledql.models.heads import MultiGameHeads
from scaledql.models.network import NetworkOutput, ScaledQNetwork
from scaledql.models.spatial import SpatialEmbedding

__all__ = [
    "ENCODER_NAMES",
    "MultiGameHeads",
    "NetworkOutput",
    "ScaledQNetwork",
    "SpatialEmbedding",
    "canonical_encoder_name",
    "make_encoder",
]
