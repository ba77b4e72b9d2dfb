"""A replica's two-tier prefix cache of KV blocks: HBM (evictable LRU, pinned while in use) and host DRAM (LRU).

Pure book-keeping, no vidur: ``envs.prefix.sim`` calls it from the replica scheduler. Memory accounting (in units
of one prefix block, ``BLOCK_TOKENS`` tokens) is shared with vidur's block allocator so that every HBM block is
counted exactly once:

* a block computed by a running request is *owned* by it: vidur's allocation for that request holds its memory;
* every other HBM block (its owner finished, or it was never owned) is *loose*: it lives in the memory vidur sees as
  free, and the scheduler keeps ``loose blocks <= free blocks`` by evicting loose, unpinned blocks;
* a block is *pinned* while a routed, unfinished request uses it; pinned blocks are never evicted.

Eviction is LRU; a finished request touches its blocks tail first, so a prefix's head stays most recent and a
prefix is evicted from its end (as vLLM frees blocks in reverse and SGLang evicts radix-tree leaves first). HBM
evictions spill to the host tier (LRU, fixed capacity; pinned host blocks wait there for their request's admission).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


class TwoTierPrefixCache:
    """HBM and host tiers of one replica; capacities are in prefix blocks."""

    def __init__(self, host_capacity: int) -> None:
        if host_capacity < 0:
            raise ValueError(f"host_capacity must be >= 0, got {host_capacity}")
        self.host_capacity = host_capacity
        self.hbm: dict[int, None] = {}  # every HBM block
        self.evictable: OrderedDict[int, None] = OrderedDict()  # unpinned loose HBM blocks, least recent first
        self.host: OrderedDict[int, None] = OrderedDict()  # least recent first
        self.refs: dict[int, int] = {}  # HBM block -> unfinished requests using it
        self.host_refs: dict[int, int] = {}  # host block -> admitted-soon requests waiting to load it
        self.owner: dict[int, int] = {}  # HBM block -> request id whose allocation holds it
        self.owned: dict[int, list[int]] = {}  # request id -> blocks it owns

    def copy(self) -> TwoTierPrefixCache:
        """An independent copy of this cache (for reusing a warmed state across episodes)."""
        other = TwoTierPrefixCache(self.host_capacity)
        other.restore(self)
        return other

    def restore(self, state: TwoTierPrefixCache) -> None:
        """Make this cache an independent copy of ``state``."""
        self.host_capacity = state.host_capacity
        self.hbm = dict(state.hbm)
        self.evictable = OrderedDict(state.evictable)
        self.host = OrderedDict(state.host)
        self.refs = dict(state.refs)
        self.host_refs = dict(state.host_refs)
        self.owner = dict(state.owner)
        self.owned = {request: list(blocks) for request, blocks in state.owned.items()}

    # ------------------------------------------------------------------ queries
    def match(self, block_ids: Sequence[int]) -> tuple[int, int]:
        """Leading blocks of ``block_ids`` cached here: ``(in HBM, then in host)``; a miss ends the prefix."""
        hbm = host = 0
        for block in block_ids:
            if host == 0 and block in self.hbm:
                hbm += 1
            elif block in self.host:
                host += 1
            else:
                break
        return hbm, host

    @property
    def loose(self) -> int:
        """HBM blocks outside every running request's allocation (they occupy vidur's free memory)."""
        return len(self.hbm) - len(self.owner)

    @property
    def loose_pinned(self) -> int:
        """Loose blocks in use: they occupy memory that admission may not count as free."""
        return self.loose - len(self.evictable)

    # ------------------------------------------------------------------ request life cycle
    def pin(self, hbm_blocks: Sequence[int], host_blocks: Sequence[int]) -> None:
        """A request admitted here uses these cached blocks: keep them until it finishes (HBM) or loads (host)."""
        for block in hbm_blocks:
            self._ref(block)
        for block in host_blocks:
            self.host_refs[block] = self.host_refs.get(block, 0) + 1
            self.host.move_to_end(block)

    def load(self, request_id: int, host_blocks: Sequence[int]) -> None:
        """The request copies its host-tier hit into its own (new) HBM allocation."""
        for block in host_blocks:
            left = self.host_refs[block] - 1
            if left:
                self.host_refs[block] = left
            else:
                del self.host_refs[block]
            self.host.pop(block, None)
            self.add_owned(request_id, block)

    def add_owned(self, request_id: int, block: int) -> None:
        """``request_id`` has computed (or loaded) ``block`` into its allocation; it uses it until it finishes.

        If another copy is already cached the request's copy is a private duplicate, as in an engine without
        de-duplication of concurrent prefills: the cached copy is pinned instead.
        """
        if block in self.hbm:
            self._ref(block)
            return
        self.host.pop(block, None)
        self.hbm[block] = None
        self.refs[block] = 1
        self.owner[block] = request_id
        self.owned.setdefault(request_id, []).append(block)

    def disown(self, request_id: int) -> None:
        """vidur freed the request's allocation (completion or restart): its blocks become loose."""
        for block in self.owned.pop(request_id, ()):
            del self.owner[block]
            if block not in self.refs:
                self.evictable[block] = None

    def release(self, used_blocks: Sequence[int], finish_blocks: Sequence[int]) -> None:
        """A finished request unpins ``used_blocks`` and leaves ``finish_blocks`` cached (loose), head most recent."""
        for block in used_blocks:
            if block in self.refs:
                self._unref(block)
        for block in reversed(finish_blocks):
            if block not in self.hbm:
                self.host.pop(block, None)
                self.hbm[block] = None
                self.evictable[block] = None
            elif block in self.evictable:
                self.evictable.move_to_end(block)

    def fit(self, free_blocks: int) -> None:
        """Evict LRU unpinned loose blocks to the host tier until ``loose <= free_blocks`` (or none is left)."""
        excess = self.loose - free_blocks
        while excess > 0 and self.evictable:
            block, _ = self.evictable.popitem(last=False)
            del self.hbm[block]
            self._spill(block)
            excess -= 1

    # ------------------------------------------------------------------ internals
    def _ref(self, block: int) -> None:
        self.refs[block] = self.refs.get(block, 0) + 1
        self.evictable.pop(block, None)

    def _unref(self, block: int) -> None:
        count = self.refs[block] - 1
        if count:
            self.refs[block] = count
            return
        del self.refs[block]
        if block not in self.owner:
            self.evictable[block] = None

    def _spill(self, block: int) -> None:
        if self.host_capacity == 0:
            return
        if len(self.host) >= self.host_capacity:
            if not self.host_refs:  # the common case: the least recent block goes
                self.host.popitem(last=False)
            else:
                victim = next((b for b in self.host if b not in self.host_refs), None)
                if victim is None:  # every host block waits for a load: drop the newcomer
                    return
                del self.host[victim]
        self.host[block] = None
