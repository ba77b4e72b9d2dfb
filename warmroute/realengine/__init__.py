"""Real-engine tools: replay a scaled trace window against OpenAI-compatible endpoints, and check the simulator's
prefix-cache model against what the engine reported."""
