# The two commands a newcomer needs: `make run` and `make test`.
.PHONY: run test test-deps lint bench

run:
	python3 -m pip install -q --disable-pip-version-check -e .
	sytq run

test-deps:
	bash hack/install-test-deps.sh

test: test-deps lint
	python3 -m pytest -q

lint:
	ruff check .
	mypy
	lint-imports

bench:
	python3 -m bench
