"""``warmroute pipeline``: the warm-start recipe as resumable stages."""
