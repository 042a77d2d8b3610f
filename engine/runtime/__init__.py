"""The run machinery: the step plan, the orchestrator, events, the reader, failures and telemetry."""
