"""Fixtures shared by the component tests: the fake Vertex AI and the real deployment provider
talking to it (used by the Vertex provider and replacement tests)."""

from tests.components.vertex_fake import deployer, fake  # fixtures: used by name

__all__ = ["deployer", "fake"]
