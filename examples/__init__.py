"""Runnable examples: the lab server (examples.lab) and the lecture scripts (examples/lecture)."""
