"""The gate methods, one module each (registered by name in ``cdg.gating.registry``)."""
