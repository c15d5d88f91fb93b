"""Pure rules of the testing service: no IO, no framework."""
