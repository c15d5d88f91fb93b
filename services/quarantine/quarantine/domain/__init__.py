"""Pure rules of the quarantine service: no IO, no framework."""
