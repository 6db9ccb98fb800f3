.PHONY: demo test test-keda setup bench lint

demo:  ## Run the local demo of the whole loop (installs what it needs)
	bash scripts/demo.sh

test:  ## Lint, type-check and run every test tier (installs what it needs)
	bash scripts/test.sh

test-keda:  ## Build KEDA too (opt-in, about 16 min of CPU cold) and run the tests marked keda
	TGI_AUTOSCALER_WITH_KEDA=1 bash scripts/test.sh -m keda

setup:
	bash scripts/setup.sh

lint:
	.venv/bin/ruff check tgi_autoscaler tgi_autoscaler_dev tests bench && .venv/bin/mypy && .venv/bin/lint-imports
