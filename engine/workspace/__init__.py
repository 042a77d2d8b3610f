"""A workspace on disk: its config, lock, history, backups and safe paths."""
