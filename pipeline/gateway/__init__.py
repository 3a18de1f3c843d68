"""The OpenAI-compatible gateway (`router-gateway`): route, call, gate, escalate, answer."""
