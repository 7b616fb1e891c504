"""Talking to a Prefect server: finding or starting one, submitting and steering runs,
answering reviews (the CLI and the Python API share it)."""
