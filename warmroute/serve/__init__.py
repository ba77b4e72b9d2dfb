"""``warmroute serve``: an OpenAI-compatible HTTP router in front of real engines (usage in warmroute/cli/serve.py)."""
