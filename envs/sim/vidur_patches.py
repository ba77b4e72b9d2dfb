"""The one place where a vidur 0.0.26 bug is patched (no fork): ``Request.restart()`` after a preemption.

vidur's sarathi and vllm replica schedulers preempt a running request when its replica runs out of KV blocks and
call ``Request.restart()`` (``vidur/entities/request.py``), which turns every token processed so far into the
prompt of a recomputation. It resets ``_num_processed_tokens`` and ``_is_prefill_complete`` but not their per-stage
twins ``_num_stage_processed_tokens`` and ``_is_prefill_stage_complete``: the next time the request runs,
``on_batch_stage_end`` adds to the stale stage count and trips ``assert self._num_stage_processed_tokens <=
self.total_tokens`` (request.py line 300), so any memory-tight fleet crashes mid-episode. The patch resets both.
Sarathi can also pick a victim whose chunked prefill is unfinished; stock restart then shrinks the prompt to the
chunks done so far (the rest would be "decoded" one token at a time and the first token stamped too early). The
patch keeps the prompt whole in that case: the recomputation re-reads max(processed tokens, prompt) tokens.

The same method also rewrites ``_num_decode_tokens`` to the tokens still to come, so a restarted request reports
fewer decode tokens than it emitted. The patch records the request's original decode count on the first restart
(:func:`emitted_decode_tokens` reads it), which is what time-between-tokens must be averaged over.

``apply()`` is idempotent and is called when ``envs.sim.simulation`` is imported; ``tests/test_preemption.py`` checks
that the stock method still crashes (so the patch can be dropped when the pin moves and the test says so).
"""

from __future__ import annotations

from typing import Any

from vidur.entities.request import Request

_STOCK_RESTART = Request.restart
_ORIGINAL_DECODE = "_warmroute_original_num_decode_tokens"


def _restart(self: Request) -> None:
    """vidur's restart (recompute everything processed as one prompt) with the fixes above."""
    if not hasattr(self, _ORIGINAL_DECODE):
        setattr(self, _ORIGINAL_DECODE, self._num_decode_tokens)
    total_tokens = self._num_prefill_tokens + self._num_decode_tokens
    self._num_prefill_tokens = max(self._num_processed_tokens, self._num_prefill_tokens)
    self._num_decode_tokens = total_tokens - self._num_prefill_tokens
    self._num_processed_tokens = 0
    self._num_stage_processed_tokens = 0
    self._num_processed_iterations = 0
    self._scheduled = False
    self._preempted = False
    self._completed = False
    self._is_prefill_complete = False
    self._is_prefill_stage_complete = False
    self._num_restarts += 1


def apply() -> None:
    """Install the patched ``Request.restart`` (safe to call more than once)."""
    Request.restart = _restart


def remove() -> None:
    """Put vidur's own ``Request.restart`` back (for the test that proves the patch is still needed)."""
    Request.restart = _STOCK_RESTART


def emitted_decode_tokens(request: Any) -> int:
    """Output tokens the user received: the decode count before any restart shrank it."""
    return getattr(request, _ORIGINAL_DECODE, request.num_decode_tokens)
