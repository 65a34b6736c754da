"""Face stages (placeholder while being written)."""

from __future__ import annotations

from streamcnn import Stage, hookimpl


@hookimpl
def streamcnn_stage_types() -> dict[str, type[Stage]]:
    return {}
