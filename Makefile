# A newcomer needs `make run` and `make test`; `make unit` is the fast lane while working.
.PHONY: run deps test unit lint bench

UNIT_MARKERS = not slow and not k8s and not interop and not image and not cluster

run:
	python3 -m pip install -q --disable-pip-version-check -e .
	sytq run

# Everything the tests need: Debian packages, Python deps, the Go-built control plane and programs.
deps:
	bash hack/install-test-deps.sh

test: deps lint
	python3 -m pytest -q

# The fast lane: no Go builds and no end-to-end runs; still real Redis and MariaDB.
unit:
	python3 -m pytest -q -m "$(UNIT_MARKERS)"

lint:
	ruff check .
	mypy
	lint-imports

bench:
	python3 -m bench
