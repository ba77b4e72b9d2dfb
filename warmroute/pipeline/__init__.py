"""``warmroute pipeline``: the warm-start recipe as resumable stages (``config``: budgets and settings; ``stages``:
one ``Stage`` record each; ``run``: reuse, resume or refuse, and run them in order)."""
