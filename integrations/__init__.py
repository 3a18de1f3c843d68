"""Integrations with other stacks (optional extras): the LiteLLM routing plugin."""
