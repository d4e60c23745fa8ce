"""A grid's cells: every combination of the search space's levels, each distinct cell once, in a fixed order.

    grid_cells(space)            the cells, the first parameter varying slowest (YAML order)
    grid_points(search)          the trials of a grid study: the cells at replicate 0, then all again at 1, ...

A conditional parameter (`when`) takes its levels only in the cells where its condition holds and is absent from the
others, so a cell is never repeated with a parameter that has no effect. A generated factor (`generated_by`) is not
crossed: its level index is the sum of its generators' level indices modulo its number of levels, which halves (or
thirds) the grid and keeps it balanced: every level of every factor appears equally often with every level of every
other crossed factor (a regular fractional design; its alias is the interaction of the generated factor with its
generators).
"""

from __future__ import annotations

from typing import Any

from study.config import REPLICATE, ParamSpec, SearchConfig


def grid_cells(space: dict[str, ParamSpec]) -> list[dict[str, Any]]:
    """Every distinct cell of the space, in a deterministic order (the first parameter varies slowest)."""
    cells: list[dict[str, Any]] = [{}]
    for name, spec in space.items():
        grown = []
        for cell in cells:
            if any(k not in cell or cell[k] not in values for k, values in spec.condition().items()):
                grown.append(cell)  # its condition fails: the parameter is absent from this cell
            elif spec.generated_by:
                levels = spec.levels()
                index = sum(space[g].levels().index(cell[g]) for g in spec.generated_by) % len(levels)
                grown.append({**cell, name: levels[index]})
            else:
                grown.extend({**cell, name: level} for level in spec.levels())
        cells = grown
    return cells


def grid_points(search: SearchConfig) -> list[dict[str, Any]]:
    """The trials of a grid study in the order they run: every cell at replicate 0, then every cell at 1, ... (a study
    stopped early holds whole replicates)."""
    cells = grid_cells(search.space)
    if search.repeats == 1:
        return cells
    return [{**cell, REPLICATE: k} for k in range(search.repeats) for cell in cells]
