"""Backends behind one protocol: local vLLM deployments on Ray Serve, and OpenAI-compatible HTTP endpoints."""
