"""Pure rules of the registry service: no IO, no framework."""
