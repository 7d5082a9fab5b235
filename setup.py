"""Maps the import package `trustwatch` onto the services/ folder (see pyproject.toml)."""

from setuptools import find_packages, setup

setup(packages=["trustwatch"] + [f"trustwatch.{p}" for p in find_packages("services")])
