"""Metrics for video explanations and video models: faithfulness, localisation, motion."""

__all__: list[str] = []
