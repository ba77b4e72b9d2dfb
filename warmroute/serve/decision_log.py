"""The routing decision log (``--decision-log PATH``): one JSON line per decision, appended and flushed as it goes.

Fields: ``id`` (the request's ``X-Request-Id``), ``time`` (Unix seconds), ``backend`` (index in ``--backend``
order), ``url``, ``prompt_tokens``, ``estimated_cached_tokens`` (the prefix index's estimate at routing),
``attempt`` (0 for the first; a request that failed over has one line per attempt, the answering backend is also
in the response's ``X-WarmRoute-Backend``), ``router``. The simulator's fidelity check replays these decisions.
"""

from __future__ import annotations

import json
import time

from envs.errors import WarmRouteError


class DecisionLog:
    """An open decision log."""

    def __init__(self, path: str, router: str) -> None:
        self._router = router
        try:
            self._file = open(path, "a", buffering=1)  # line-buffered: every decision is on disk at once
        except OSError as exc:
            raise WarmRouteError(f"{{flag:decision_log}} {path}: cannot write ({exc.strerror}); choose another path") from None

    def write(self, request_id: str, backend: int, url: str, prompt_tokens: int, cached_tokens: int, attempt: int) -> None:
        record = {
            "id": request_id,
            "time": time.time(),
            "backend": backend,
            "url": url,
            "prompt_tokens": prompt_tokens,
            "estimated_cached_tokens": cached_tokens,
            "attempt": attempt,
            "router": self._router,
        }
        self._file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        self._file.close()
