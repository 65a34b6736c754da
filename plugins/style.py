"""Built-in stage ``style``: neural style transfer (work in progress)."""

from __future__ import annotations

from streamcnn import Stage, hookimpl


class StyleStage(Stage):
    """Placeholder while the stage is written."""


@hookimpl
def streamcnn_stage_types() -> dict[str, type[Stage]]:
    return {"style": StyleStage}
