"""A SIMULATED OpenAI-compatible provider for Stage 5 (no LLM is reachable here)."""
