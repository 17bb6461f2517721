"""Learners: network + losses + optimizer + target network = one update step."""

from scaledql.agents.scaled_ql import (
    AgentConfig,
    BatchTensors,
    ScaledQLAgent,
    batch_to_tensors,
    build_agent_from_checkpoint,
    scaled_ql_loss,
)

__all__ = ["AgentConfig", "BatchTensors", "ScaledQLAgent", "batch_to_tensors",
           "build_agent_from_checkpoint", "scaled_ql_loss"]
