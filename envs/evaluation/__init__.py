"""Running policies on held-out seeds, and the clairvoyant lookahead that bounds what any router could gain."""
