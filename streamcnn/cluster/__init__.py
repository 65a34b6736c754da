"""Run a pipelines file on a Ray cluster: ``streamcnn run FILE --ray ADDRESS`` (or ``cluster:`` in it).

Data flow: the driver (the ``streamcnn run`` process) validates the file as always, then starts one
Ray actor per pipeline, or per ``group:`` of pipelines, with the ``resources:`` they ask for
(`plan`). Each actor (`worker.GroupWorker`) loads the same file and runs its pipelines in its own
process with the ordinary `streamcnn.engine.Engine`: source → stages → sinks on the node Ray
placed it on. Frames never leave that process; what crosses the cluster is small: each pipeline's
snapshot (counters, state, last frame index and pts) polled by the driver a few times a second,
the final counters, and a JPEG of the latest frame only while someone watches the dashboard.

What Ray does: placement of the actors on nodes by their resources, restarting an actor whose
process or node died (``max_restarts``), the object store that ships local model files to the
nodes (`shipping`), the processes. What streamcnn does: everything of a pipeline (reading, models,
sinks, events, reconnecting cameras), resuming a restarted pipeline where it left off (`progress`:
frame index and pts continue), failing a pipeline for good after ``max_restarts`` without touching
the others, graceful stop on Ctrl-C/SIGTERM, and the control plane over all pipelines (`driver`).

Ray is optional (``pip install -e '.[ray]'``); this package imports it only inside `driver` and
`worker`, and only when ``--ray`` is given.
"""

from __future__ import annotations

from typing import Any

from ..errors import StreamcnnError

RAY_INSTALL = "pip install -e '.[ray]' in the streamcnn checkout (or pip install 'ray>=2.60')"


class ClusterError(StreamcnnError):
    """``--ray`` cannot be used as given: Ray is missing, or the cluster does not answer (exit code 2)."""

    exit_code = 2


def import_ray() -> Any:
    """The ``ray`` module.

    Raises:
        ClusterError: Ray is not installed (the message says how to install it).
    """
    try:
        import ray
    except ImportError:
        raise ClusterError(f"--ray runs the pipelines on a Ray cluster, which needs Ray: {RAY_INSTALL}") from None
    return ray


__all__ = ["RAY_INSTALL", "ClusterError", "import_ray"]
