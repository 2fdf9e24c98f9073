"""The one YAML reader of salgl settings (params files, ``--set`` values), bounded.

YAML aliases let a few hundred bytes name a tree of billions of nodes (``b: [*a, *a, ...]``
nine levels deep). PyYAML builds such a tree cheaply by sharing, but everything that walks
it afterwards (validation, an error message quoting the value, DVC's own params hashing)
does not. So a document whose tree, with every alias expanded, would exceed a budget is
refused while it is still a graph of nodes, before anything walks it; so is one that refers
to itself, or that nests deeper than Python's stack allows.
"""

from __future__ import annotations

from typing import Any

import yaml

from salgl.errors import SalglError

# Nodes after expanding every alias. The repository's params.yaml has about 600; an
# ablation params file about 300. 100,000 leaves room for any real settings file.
EXPANDED_NODE_BUDGET = 100_000


class _Expansion(Exception):
    """The document expands beyond the budget, or into itself."""


def _expanded_size(node: yaml.Node, memo: dict[int, int], open_nodes: set[int],
                   budget: int) -> int:
    """Nodes of ``node``'s tree with aliases expanded (shared nodes counted each time)."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in open_nodes:
        raise _Expansion("refers to itself through an alias")
    open_nodes.add(key)
    total = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    else:
        children = []
    for child in children:
        total += _expanded_size(child, memo, open_nodes, budget)
        if total > budget:
            raise _Expansion(f"expands to more than {budget:,} nodes through aliases")
    open_nodes.discard(key)
    memo[key] = total
    return total


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that measures the composed document before constructing anything."""

    def compose_document(self) -> yaml.Node | None:
        node = super().compose_document()
        if node is not None:
            _expanded_size(node, {}, set(), EXPANDED_NODE_BUDGET)
        return node


def read_yaml(text: str, source: str) -> Any:
    """The YAML value of ``text``; any problem is one SalglError naming ``source`` (a file,
    or an option such as ``--set seed``) and, where YAML knows it, the line."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 (a SafeLoader subclass)
    except _Expansion as exc:
        raise SalglError(f"{source}: refused: the YAML {exc} (an alias bomb?); write the "
                         "values out") from None
    except RecursionError:
        raise SalglError(f"{source}: refused: the YAML nests too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise SalglError(f"{source}{line}: not valid YAML "
                         f"({getattr(exc, 'problem', None) or exc})") from None
