"""`python -m innerdpo_bench ...` (and `accelerate launch -m innerdpo_bench ...`) run the CLI."""

from innerdpo_bench.cli.main import main

if __name__ == "__main__":
    main()
