"""Package discovery, so that no package can be left out of the wheel: every folder under innerdpo_bench/ (the data
folders under data/real/ included, as namespace packages holding package data), plus the dashboard and the lm-eval
task folder, which live beside it in tui/ and tasks/ and install as innerdpo_bench.tui and innerdpo_bench.tasks
(pyproject's package-dir). Everything else is in pyproject.toml."""

from setuptools import find_namespace_packages, setup


def discover() -> list[str]:
    skip = ["*__pycache__*", "*.egg-info*"]
    packages = find_namespace_packages(include=["innerdpo_bench", "innerdpo_bench.*"], exclude=skip)
    for folder in ("tui", "tasks"):
        packages += [f"innerdpo_bench.{name}" for name in find_namespace_packages(include=[folder, f"{folder}.*"],
                                                                                  exclude=skip)]
    return sorted(packages)


if __name__ == "__main__":
    setup(packages=discover())
