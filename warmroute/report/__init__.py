"""Reports of a pipeline directory (``build``: report.json, ``markdown``: report.md, ``plots``: the PNGs) and the
cold-vs-warm comparison of ``warmroute compare`` (``compare``)."""
