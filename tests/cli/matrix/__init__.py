"""The CLI matrix's case tables, one module per area. Each declares its categories and their
cases; tests/cli/clitest.py is the harness and tests/cli/test_matrix.py runs every case."""

from __future__ import annotations

from tests.cli.clitest import Case, Category
from tests.cli.matrix import contrib, host, lease, pool, report, vm

CATEGORIES: list[Category] = [*host.CATEGORIES, *pool.CATEGORIES, *lease.CATEGORIES,
                              *vm.CATEGORIES, *report.CATEGORIES, *contrib.CATEGORIES]


def all_cases() -> list[Case]:
    return [case for category in CATEGORIES for case in category.cases]
