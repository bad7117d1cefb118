"""Fixtures for the HIL suite's own tests."""

from __future__ import annotations

import matplotlib
import pytest
from pytester_project import Project

# The plugin imports pyplot on the first chart. pytester's in-process runs drop modules first imported
# inside them, and numpy cannot be imported twice in one process: import it here, outside those runs.
matplotlib.use("Agg")
import matplotlib.pyplot


@pytest.fixture
def project(pytester: pytest.Pytester) -> Project:
    """A pytester folder with a bench file, variant files and the real HIL test module."""
    return Project(pytester)
