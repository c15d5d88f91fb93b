# Shortcuts for the README's commands; the scripts do the work.
.PHONY: up test verify
up:
	scripts/up --demo
test:
	scripts/test
verify:
	scripts/verify
