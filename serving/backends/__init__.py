"""Backends behind one protocol: local vLLM deployments on Ray Serve, and OpenAI-compatible HTTP endpoints."""

from serving.backends.base import Backend, BackendFailure, BackendRefusal, Endpoint, Opened

__all__ = ["Backend", "BackendFailure", "BackendRefusal", "Endpoint", "Opened"]
