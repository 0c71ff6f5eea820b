def wheel_minilm() -> str:
    """The MiniLM folder inside its wheel (no manifest there: the egress review checks its files against the digests
    its artefact recorded). Test harnesses that configure a non-sovereign backend point the egress review at it."""
    from models.registry import KNOWN_MODELS, package_path

    return str(package_path(KNOWN_MODELS["minilm"]))
