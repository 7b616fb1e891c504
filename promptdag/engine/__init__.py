"""The engine's pure decisions and data: ready set, results, events, estimates, batches and
the objective's rounds (no Prefect flow code, no vendor SDK)."""
