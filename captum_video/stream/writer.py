r"""The writer of a stream: explained windows into the output files, then to the consumer.

Runs in its own thread (:class:`~captum_video.stream.StreamExplainer` starts it). A failure to
write stops the stream but the writer keeps draining, so the explainer never blocks; at the end
it finishes the summary and closes the files, also after an error, before the consumer hears
that the stream ended.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

from captum_video.stream.outputs import StreamOutputs
from captum_video.stream.queues import END, POLL_SECONDS
from captum_video.stream.results import RunState

__all__ = ["ResultWriter"]


class ResultWriter:
    """Writes a stream's explained windows (the writer thread's work).

    Args:
        request_stop (callable): ``reason -> None``, ends the stream with a reason.
        reason (callable): ``() -> str``, why the stream ended, for its summary.

    Returns:
        A ResultWriter; :meth:`run` writes.

    Example::

        >>> writer = ResultWriter(lambda reason: None, lambda: "end of source")
    """

    def __init__(self, request_stop: Callable[[str], None], reason: Callable[[], str]) -> None:
        self.request_stop, self.reason = request_stop, reason

    def run(
        self,
        explained: queue.Queue[Any],
        results: queue.Queue[Any],
        outputs: StreamOutputs | None,
        state: RunState,
    ) -> None:
        """Write every explained window, hand it on, and finish the stream's files at the end.

        Args:
            explained (queue.Queue): explained windows from the explainer, then :data:`END`.
            results (queue.Queue): where written windows go to the consumer, then :data:`END`.
            outputs (StreamOutputs or None): the files; None writes nothing.
            state (RunState): the stream's shared counters; errors are recorded there.

        Returns:
            None
        """
        summary = state.summary
        failed = False
        try:
            while True:
                item = explained.get()
                if item is END:
                    break
                if outputs is not None and not failed:
                    try:
                        outputs.add(item, state.snapshot())
                    except BaseException as err:  # noqa: BLE001 - keep draining, then report
                        state.errors.append(err)
                        self.request_stop("error")
                        failed = True
                while not state.consumer_gone:
                    try:
                        results.put(item, timeout=POLL_SECONDS)
                        break
                    except queue.Full:
                        continue
        finally:
            state.finish(self.reason())
            if outputs is not None:
                try:
                    outputs.close(summary)
                except BaseException as err:  # noqa: BLE001
                    state.errors.append(err)
            while not state.consumer_gone:
                try:
                    results.put(END, timeout=POLL_SECONDS)
                    break
                except queue.Full:
                    continue
