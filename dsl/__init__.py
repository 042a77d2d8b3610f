"""Blueprint DSL: grammar, parser, catalog, validator, formatter and structural scorer (no torch, no textual)."""
