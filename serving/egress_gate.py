"""The gateway's side of the egress review: load the reviewer once, run it off the event loop under a deadline.

``EgressGate.check(body)`` answers what the gateway needs before the first byte would go to a non-sovereign backend:
``None`` when the review passed (the request may leave), else the signal names to add to the classification, after
which the request must not leave: the review's categories and score bucket when it flagged the request, or
``semantic_review_unavailable`` when it could not answer (not loaded, failed, or past ``deadline_ms``). Nothing here
logs or raises anything that holds request text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from routing.egress_review import (
    DEFAULT_ARTEFACT,
    UNAVAILABLE_SIGNAL,
    ArtefactError,
    EgressReviewer,
    ReviewError,
)
from serving.config import EgressReviewConfig, Settings

log = logging.getLogger("sovereign.egress_review")


def load_reviewer(config: EgressReviewConfig) -> EgressReviewer:
    """Verify and load the configured artefact and model (raises ``ArtefactError`` naming what is wrong)."""
    return EgressReviewer.load(config.artefact or DEFAULT_ARTEFACT, Path(config.model), threshold=config.threshold)


def verify_egress_review(settings: Settings) -> None:
    """At start, beside the weights' manifests: refuse to start when the review is on and cannot load."""
    if settings.egress_review_on:
        load_reviewer(settings.egress_review)


class EgressGate:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.egress_review_on
        self.deadline_s = settings.egress_review.deadline_ms / 1000
        self.reviewer: EgressReviewer | None = None
        self._executor: ThreadPoolExecutor | None = None
        if not self.enabled:
            return
        try:
            self.reviewer = load_reviewer(settings.egress_review)
        except ArtefactError as exc:  # fail closed per request rather than take local traffic down with it
            log.error("egress review unavailable; nothing will go to a non-sovereign backend: %s", exc)
            return
        # Two threads, so one slow review does not hold up every other (the tokenizer releases the GIL).
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="egress-review")
        if self.reviewer.meta.get("contextual"):
            import torch

            # The second stage's transformer runs in this (router) process: one thread per review, so two reviews
            # at once take two CPUs at most and never spread over the ones the router shares with the engines.
            torch.set_num_threads(1)

    @property
    def digest(self) -> str | None:
        return self.reviewer.digest if self.reviewer is not None else None

    async def check(self, body: Mapping[str, Any]) -> tuple[str, ...] | None:
        """``None``: the request may leave. Otherwise the signals to record; the request must stay local."""
        if self.reviewer is None or self._executor is None:
            return (UNAVAILABLE_SIGNAL,)
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        future = loop.run_in_executor(self._executor, self.reviewer.review_request, body, self.deadline_s)
        try:
            review = await asyncio.wait_for(future, timeout=self.deadline_s)
        except (ReviewError, TimeoutError) as exc:
            log.warning(
                "egress review unavailable for a request (%s after %.1f ms)",
                exc.__class__.__name__,
                (time.perf_counter() - started) * 1000,
            )
            return (UNAVAILABLE_SIGNAL,)
        except Exception as exc:
            log.error("egress review failed (%s)", exc.__class__.__name__)
            return (UNAVAILABLE_SIGNAL,)
        return review.signals if review.sensitive else None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
