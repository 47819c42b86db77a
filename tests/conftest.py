"""Shared pytest setup: measured figures are shown at the end of every run."""
import pytest

_FIGURES = []


@pytest.fixture
def figure():
    """Record a line such as 'sun: worst difference vs astral = 16.5 s'; printed in the summary."""
    return _FIGURES.append


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.section("measured figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)
