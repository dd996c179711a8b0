"""A function whose module fails to import."""

raise ImportError("a dependency is missing")
