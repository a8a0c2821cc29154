"""Registries own their names (issue 27): each name the recipe allows is written once where it belongs, and
where two layers each need a table of the same names, the two are held equal here.

* dataset names: the packaged recipe files ``elope/configs/<name>.yaml`` (``elope.config.DATASETS`` is read
  off them) and the readers of ``elope.data.registry.READERS``: a dataset without a recipe, or a recipe
  without a reader, fails with the file or entry to add;
* ``model.box_rule``: ``elope.spec.BOX_RULES`` is the one owner (the recipe's schema and the nn layer read
  it), checked here too;
* ``model.pooling``, ``loss.variant``, ``loss.localizer_target``, ``loss.class_weights``: the recipe's
  ``Literal`` (base layer, which may not import nn or engine) equals the table of the layer that acts on the
  name (``elope.nn.model.POOLINGS``, ``elope.nn.losses.LOSSES`` plus ``none``,
  ``elope.nn.localization.HEATMAP_TARGETS``, ``elope.engine.balance.CLASS_WEIGHTS``).
"""

from __future__ import annotations

import typing
from collections.abc import Iterable

import pytest
from pydantic import BaseModel

from elope.config import DATASETS
from elope.config.recipe import DatasetConfig, LossConfig, ModelConfig, recipe_folder
from elope.data.registry import READERS
from elope.engine.balance import CLASS_WEIGHTS
from elope.nn.localization import HEATMAP_TARGETS
from elope.nn.losses import LOSSES
from elope.nn.model import POOLINGS
from elope.spec import BOX_RULES


def _recipe_files() -> list[str]:
    return sorted(f.name.removesuffix(".yaml") for f in recipe_folder().iterdir() if f.name.endswith(".yaml"))


def dataset_mismatch(readers: Iterable[str], recipes: Iterable[str]) -> list[str]:
    """What to add so that every reader has its recipe and every recipe its reader (empty: they agree)."""
    readers, recipes = set(readers), set(recipes)
    return [
        f"dataset {name!r} has a reader but no recipe: add elope/configs/{name}.yaml"
        for name in sorted(readers - recipes)
    ] + [
        f"recipe elope/configs/{name}.yaml has no reader: add {name!r} to READERS in elope/data/registry.py "
        "(or remove the file)"
        for name in sorted(recipes - readers)
    ]


def allowed(model: type[BaseModel], field: str) -> tuple[str, ...]:
    """The values a ``Literal`` field of a recipe section allows."""
    return typing.get_args(model.model_fields[field].annotation)


def test_dataset_names_are_the_recipe_files_and_the_readers() -> None:
    assert dataset_mismatch(READERS, _recipe_files()) == []
    assert tuple(_recipe_files()) == DATASETS  # the recipe's names are read off the files
    assert allowed(DatasetConfig, "name") == DATASETS


def test_a_missing_recipe_or_reader_is_named_with_the_file_to_add() -> None:
    """The check can fail, and says which file to add."""
    assert dataset_mismatch([*READERS, "newset"], _recipe_files()) == [
        "dataset 'newset' has a reader but no recipe: add elope/configs/newset.yaml"
    ]
    problems = dataset_mismatch([n for n in READERS if n != "pets"], _recipe_files())
    assert problems == [
        "recipe elope/configs/pets.yaml has no reader: add 'pets' to READERS in elope/data/registry.py "
        "(or remove the file)"
    ]


@pytest.mark.parametrize(
    ("model", "field", "names", "owner"),
    [
        (ModelConfig, "pooling", POOLINGS, "elope.nn.model.POOLINGS"),
        (ModelConfig, "box_rule", BOX_RULES, "elope.spec.BOX_RULES"),
        (LossConfig, "variant", ("none", *LOSSES), "'none' + elope.nn.losses.LOSSES"),
        (LossConfig, "localizer_target", HEATMAP_TARGETS, "elope.nn.localization.HEATMAP_TARGETS"),
        (LossConfig, "class_weights", CLASS_WEIGHTS, "elope.engine.balance.CLASS_WEIGHTS"),
    ],
)
def test_recipe_choices_equal_the_tables_that_act_on_them(
    model: type[BaseModel], field: str, names: tuple[str, ...], owner: str
) -> None:
    recipe = allowed(model, field)
    assert set(recipe) == set(names), (
        f"{model.__name__}.{field} allows {sorted(recipe)}, {owner} has {sorted(names)}: make them equal "
        "(elope/config/recipe.py and the table)"
    )
    assert len(recipe) == len(names)  # no repeats on either side


def test_the_choices_check_can_fail() -> None:
    assert set(allowed(LossConfig, "variant")) != {"none", *LOSSES, "triplet"}
    assert set(allowed(ModelConfig, "pooling")) != set(POOLINGS[:-1])
