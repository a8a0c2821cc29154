"""Training recipes: YAML files validated by pydantic, with command-line overrides.

A recipe has five sections, each a pydantic model that refuses unknown keys:

``dataset``  which data and at what resolution (Sec. 6: 448 px),
``model``    the network (backbone, K of Eq. 3, embedding size, pooling, localizer, τ of Sec. 5),
``loss``     the class-mean loss of Eqs. (5)-(10) and its weight λ in Eq. (1),
``stages``   one optimiser schedule per stage of the recipe (Sec. 6 and the authors' release),
``train``    which stages to run, seed, device, precision, checkpointing, model selection.

The defaults of one dataset live in ``elope/configs/<dataset>.yaml``; :func:`load_config` merges, in this
order, that file, an optional user YAML file (same keys, any subset), dotted ``key=value`` overrides
(values parsed with ``yaml.safe_load``, so ``true``, ``3``, ``[a, b]`` get their YAML types), and finally
``epochs`` / ``batch_size`` shortcuts that set every stage at once. A wrong key or value raises
:class:`ConfigError` naming the key path and what is allowed there.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from elope.config.files import deep_merge, parse_override, read_yaml, set_dotted
from elope.config.recipe import DATASETS, STAGES, Config, StageConfig, SyntheticConfig, recipe_folder
from elope.failures import ConfigError, short_repr

__all__ = [  # ConfigError, parse_override and set_dotted are re-exported: callers import them from here
    "DATASETS",
    "PAPER_LOCALIZATION",
    "STAGES",
    "Config",
    "ConfigError",
    "StageConfig",
    "SyntheticConfig",
    "default_config_path",
    "load_config",
    "parse_override",
    "set_dotted",
    "shortcut_notes",
]


#: ``--paper``: the localization step exactly as the paper and the authors' release have it, where the
#: packaged recipes depart from it (docs/architecture.md says why, with the paired results): every heatmap
#: cell above τ makes the box, τ is the recipe's fixed Table 2 value, the cells are not upsampled, the crop
#: is cut at the box (no margin), and the module learns the raw mean heatmap. Every other value of the recipes is the paper's already.
PAPER_LOCALIZATION: dict[str, Any] = {
    "model.box_rule": "all",
    "model.tau_select": "fixed",
    "model.heatmap_upsample": False,
    "model.box_margin": 0.0,
    "loss.localizer_target": "raw",
    "train.crop_decision": "always",
    "dataset.val_fraction": 0.0,
}


def default_config_path(dataset: str) -> Path:
    """Path of the packaged recipe of ``dataset``."""
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {short_repr(dataset)}; choose one of {', '.join(DATASETS)}")
    return Path(str(recipe_folder() / f"{dataset}.yaml"))


def load_config(
    dataset: str | None = None,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | Iterable[str | tuple[str, Any]] = (),
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    base: Mapping[str, Any] | None = None,
    paper: bool = False,
) -> Config:
    """Resolve a recipe.

    ``base`` (a dict, e.g. a run's saved config) replaces the packaged defaults when given. ``paper``
    applies :data:`PAPER_LOCALIZATION` on top of it, before the user's file and overrides. ``overrides``
    is a mapping of dotted keys to values, or an iterable of ``(dotted key, value)`` pairs and
    ``"dotted.key=yaml value"`` strings, applied in order.
    ``epochs`` and ``batch_size`` set that field of every stage (``--epochs N`` for quick runs).
    """
    user = read_yaml(Path(config_file)) if config_file is not None else {}
    if dataset is None:
        dataset = (user.get("dataset") or {}).get("name") if isinstance(user.get("dataset"), dict) else None
        if dataset is None and base is not None:
            dataset = base["dataset"]["name"]
        if dataset is None:
            raise ConfigError("no dataset given: pass --dataset or a config file with dataset.name")
    data = copy.deepcopy(dict(base)) if base is not None else read_yaml(default_config_path(dataset))
    if paper:
        for key, value in PAPER_LOCALIZATION.items():
            set_dotted(data, key, value)
    deep_merge(data, user)
    data.setdefault("dataset", {})["name"] = dataset
    pairs = (
        overrides.items()
        if isinstance(overrides, Mapping)
        else (parse_override(o) if isinstance(o, str) else o for o in overrides)
    )
    for key, value in pairs:
        set_dotted(data, key, value)
    Config.from_dict(data)  # every value checked, also one that a shortcut below replaces
    for field, value in (("epochs", epochs), ("batch_size", batch_size)):
        if value is not None:
            for stage in STAGES:
                set_dotted(data, f"stages.{stage}.{field}", value)
    return Config.from_dict(data)


def shortcut_notes(overrides: Iterable[Any], epochs: int | None, batch_size: int | None) -> list[str]:
    """One line per ``--set stages.S.epochs|batch_size=V`` that ``--epochs`` / ``--batch-size`` replaces
    (a shortcut sets that field of every stage, so it wins)."""
    notes = []
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        field = key.rpartition(".")[2]
        shortcut = {"epochs": epochs, "batch_size": batch_size}.get(field)
        if key.startswith("stages.") and shortcut is not None and value != shortcut:
            flag = "--" + field.replace("_", "-")
            notes.append(
                f"note: {flag} {shortcut} replaces --set {key}={short_repr(value)} (it sets every stage)"
            )
    return notes
