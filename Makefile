.PHONY: run test lint
run:  ## run paycore with the sandbox gateway (SQLite, no servers needed)
	scripts/run.sh
test:  ## run the test suite on PostgreSQL and Redis
	scripts/test.sh
lint:
	.venv/bin/ruff check .
