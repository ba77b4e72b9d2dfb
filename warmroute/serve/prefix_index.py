"""Approximate prefix index: which prompt blocks the router has sent to each backend, bounded and LRU.

A real router cannot see inside an engine's KV cache (unless the engine publishes KV events), so it remembers the
blocks it routed, as SGLang's gateway (approximate radix tree) and llm-d's prefix scorer do: each full block of
``block_size`` prompt tokens is named by a hash chained over every block before it, so two prompts share a block
hash exactly when they share the whole prefix up to the end of that block (vLLM's own block hashing). Each backend
keeps at most ``capacity`` hashes; the least recently matched or inserted goes first, like the engine's LRU
eviction of free cached blocks.

The estimate of cached tokens follows vLLM's rules: only full blocks hit, and at least one prompt token is always
computed (a 192-token prompt repeated hits 160 tokens with 32-token blocks, a 200-token one 192).
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from collections.abc import Sequence

TEXT_CHARS_PER_TOKEN = 4
"""Characters per token assumed for a text prompt (no tokenizer in the router): the usual English estimate."""


def prompt_units(prompt: Sequence[int] | str) -> tuple[list[int] | str, int]:
    """``(units to hash, prompt tokens)``: a token-id list as is; a text is hashed by characters and its token
    count estimated at :data:`TEXT_CHARS_PER_TOKEN` characters per token."""
    if isinstance(prompt, str):
        return prompt, max(1, -(-len(prompt) // TEXT_CHARS_PER_TOKEN)) if prompt else 0
    return list(prompt), len(prompt)


def block_hashes(units: Sequence[int] | str, block_size: int) -> list[bytes]:
    """Chained hash of every full block (``block_size`` tokens, or ``block_size`` x 4 characters of text)."""
    width = block_size * (TEXT_CHARS_PER_TOKEN if isinstance(units, str) else 1)
    hashes: list[bytes] = []
    parent = b""
    for start in range(0, len(units) - width + 1, width):
        block = units[start : start + width]
        data = block.encode() if isinstance(block, str) else array("q", block).tobytes()
        parent = hashlib.blake2b(parent + data, digest_size=16).digest()
        hashes.append(parent)
    return hashes


def affinity_key(hashes: list[bytes], units: Sequence[int] | str) -> float:
    """Stable hash in (0, 1) of the prompt's first two blocks (the simulator's trace session: its first two block
    ids), or of the whole prompt when it is shorter; never 0, which means "no key"."""
    if len(hashes) >= 2:
        digest = hashes[1]
    else:
        digest = hashlib.blake2b(str(list(units) if not isinstance(units, str) else units).encode(), digest_size=16).digest()
    return (int.from_bytes(digest[:4], "big") + 1) / (2**32 + 2)


class PrefixIndex:
    """Per backend, an LRU set of the block hashes routed there."""

    def __init__(self, num_backends: int, block_size: int, capacity: int) -> None:
        self.block_size = block_size
        self.capacity = capacity
        self._blocks: list[OrderedDict[bytes, None]] = [OrderedDict() for _ in range(num_backends)]

    def matched_blocks(self, backend: int, hashes: list[bytes]) -> int:
        """Leading blocks of ``hashes`` the backend holds (the chain makes a prefix match a run from the start)."""
        blocks = self._blocks[backend]
        count = 0
        for digest in hashes:
            if digest not in blocks:
                break
            count += 1
        return count

    def cached_tokens(self, backend: int, hashes: list[bytes], prompt_tokens: int) -> int:
        """Prompt tokens the backend is estimated to serve from its cache (full blocks, never the last token)."""
        if prompt_tokens <= 0:
            return 0
        limit = (prompt_tokens - 1) // self.block_size * self.block_size
        return min(self.matched_blocks(backend, hashes) * self.block_size, limit)

    def insert(self, backend: int, hashes: list[bytes]) -> None:
        """Record that the prompt's blocks are now on ``backend`` (most recently used), evicting the oldest."""
        blocks = self._blocks[backend]
        for digest in hashes:
            blocks[digest] = None
            blocks.move_to_end(digest)
        while len(blocks) > self.capacity:
            blocks.popitem(last=False)

    def size(self, backend: int) -> int:
        """Block hashes held for ``backend``."""
        return len(self._blocks[backend])
