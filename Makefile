# The two commands of the README. Each does its own set-up on a fresh machine (scripts/setup.sh).
.PHONY: demo test bench

demo:
	@scripts/setup.sh
	.venv/bin/xdsi demo

test:
	@scripts/setup.sh --with-postgres
	.venv/bin/python -m pytest -q

bench:
	@scripts/setup.sh --with-postgres
	.venv/bin/python -m benchmarks
