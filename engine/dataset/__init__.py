"""Training rows and lessons: checking, synthesis, import, leakage and drafts."""
