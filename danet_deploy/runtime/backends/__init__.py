"""Runtime backends; each imports its own engine library lazily."""
