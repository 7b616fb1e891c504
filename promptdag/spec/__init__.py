"""What a user writes: spec models, loading within input bounds, the graph, conditions,
templates, schemas and presets."""
