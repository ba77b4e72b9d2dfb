"""A Mooncake-format trace window scaled down to a tiny model: hash ids become token ids, lengths shrink.

The trace gives one hash id per 512-token block of each prompt; two requests whose ``hash_ids`` share a leading run
share that prefix. A real engine only sees tokens, so each hash id becomes a fixed, deterministic block of
``block_size`` token ids (the same id always gives the same tokens): shared blocks are shared tokens, and the engine's
own prefix cache (which hashes full ``block_size``-token blocks) finds exactly the sharing the trace records.

Scaling is by the block: one 512-token trace block is one ``block_size``-token engine block, so the engine's context
holds the trace's long prompts (factor 16 at block size 32). A partial last block keeps its share of the block
(rounded up), prompts longer than ``max_blocks`` blocks are cut to their first ``max_blocks`` (cutting at a block
boundary keeps every shared prefix shared), and outputs shrink by the same factor, capped at ``max_output_tokens``
(decoding is the slow part on a CPU and plays no part in prefix caching).

The simulator replays the same window at the trace's own scale (``SCALE`` tokens per engine token,
``warmroute.realengine.fidelity``), so one cached engine block is one cached trace block on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.errors import WarmRouteError
from envs.prefix.workloads import BLOCK_TOKENS, TraceRow

FIRST_TOKEN_ID = 3
"""Token ids start here, clear of the usual special ids (0 pad, 1 bos, 2 eos)."""


@dataclass(frozen=True)
class ScaledRequest:
    """One trace request as the replayer sends it."""

    index: int
    """Row of the trace."""
    arrival_s: float
    """Send time after the window's first request, seconds (trace time times the time scale)."""
    prompt: tuple[int, ...]
    """Token ids."""
    output_tokens: int
    block_ids: tuple[int, ...]
    """The trace hash ids behind the prompt, one per engine block (the last may be partial)."""


@dataclass(frozen=True)
class ScaleConfig:
    """How a trace window is shrunk for a tiny model."""

    block_size: int = 32
    """Engine tokens per trace block (the engine's KV block size, so a trace block is a cacheable engine block)."""
    max_blocks: int = 16
    """Longest prompt, in blocks (longer prompts keep their first blocks)."""
    max_output_tokens: int = 8
    """Longest answer, tokens."""
    vocab_size: int = 512
    """The model's vocabulary (token ids are drawn below it)."""

    def __post_init__(self) -> None:
        if self.block_size < 1 or BLOCK_TOKENS % self.block_size:
            raise WarmRouteError(f"{{flag:block_size}} must divide {BLOCK_TOKENS} (got {self.block_size})")
        if self.max_blocks < 1 or self.max_output_tokens < 1:
            raise WarmRouteError("{flag:max_blocks} and {flag:max_output_tokens} must be >= 1")
        if self.vocab_size <= FIRST_TOKEN_ID + 1:
            raise WarmRouteError(f"{{flag:vocab_size}} must be > {FIRST_TOKEN_ID + 1} (got {self.vocab_size})")

    @property
    def scale(self) -> int:
        """Trace tokens per engine token."""
        return BLOCK_TOKENS // self.block_size


def block_tokens(hash_id: int, config: ScaleConfig) -> np.ndarray:
    """The ``block_size`` token ids that stand for trace block ``hash_id`` (the same in every process)."""
    rng = np.random.default_rng([hash_id, 22])
    return rng.integers(FIRST_TOKEN_ID, config.vocab_size, size=config.block_size)


def scaled_lengths(row: TraceRow, config: ScaleConfig) -> tuple[tuple[int, ...], int, int]:
    """``(hash ids kept, prompt tokens, output tokens)`` of one trace row at engine scale."""
    blocks = row.hash_ids[: -(-row.input_length // BLOCK_TOKENS)]
    if len(blocks) > config.max_blocks:
        blocks = blocks[: config.max_blocks]
        prompt = config.max_blocks * config.block_size
    else:
        last = row.input_length - (len(blocks) - 1) * BLOCK_TOKENS
        prompt = (len(blocks) - 1) * config.block_size + -(-last // config.scale)
    output = min(config.max_output_tokens, max(1, round(row.output_length / config.scale)))
    return blocks, prompt, output


def scale_window(
    rows: tuple[TraceRow, ...], start: int, count: int, config: ScaleConfig, time_scale: float = 1.0
) -> list[ScaledRequest]:
    """Rows ``start .. start+count`` as token-id requests, arrivals relative to row ``start`` times ``time_scale``."""
    if not 0 <= start < len(rows):
        raise WarmRouteError(f"{{flag:trace_start}} {start} is outside the trace's {len(rows)} requests")
    if count < 1:
        raise WarmRouteError(f"{{flag:num_requests}} must be >= 1 (got {count})")
    if not time_scale > 0:
        raise WarmRouteError(f"{{flag:time_scale}} must be > 0 (got {time_scale})")
    origin = rows[start].timestamp_ms
    out = []
    for index in range(start, min(start + count, len(rows))):
        row = rows[index]
        blocks, prompt_tokens, output = scaled_lengths(row, config)
        tokens = np.concatenate([block_tokens(h, config) for h in blocks])[:prompt_tokens]
        out.append(
            ScaledRequest(
                index=index,
                arrival_s=(row.timestamp_ms - origin) / 1000.0 * time_scale,
                prompt=tuple(int(t) for t in tokens),
                output_tokens=output,
                block_ids=tuple(blocks),
            )
        )
    return out
