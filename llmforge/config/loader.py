"""Read a recipe: YAML files joined by `extends:`, then `a.b=c` overrides, then the schema.

Each key remembers where it was set (which file, or the command line) so an error can
point at the place to fix rather than at the merged result.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from llmforge.config.compose import run_config_class, unused_keys
from llmforge.config.schema import RunConfig
from llmforge.config.stages import stage_specs
from llmforge.errors import UserError, did_you_mean

COMMAND_LINE = "the command line"


class RawConfig:
    """A merged recipe as plain data, plus where each dotted key came from."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.origins: dict[str, str] = {}

    def merge(self, layer: dict[str, Any], origin: str) -> None:
        _deep_merge(self.data, layer)
        for key in _dotted_keys(layer):
            self.origins[key] = origin

    def origin_of(self, dotted: str) -> str:
        """The source of the longest recorded prefix of `dotted`."""
        parts = dotted.split(".")
        for end in range(len(parts), 0, -1):
            found = self.origins.get(".".join(parts[:end]))
            if found:
                return found
        return "the recipe"


def _deep_merge(base: dict[str, Any], layer: dict[str, Any]) -> None:
    """Dicts merge key by key; anything else (lists included) replaces."""
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def _dotted_keys(tree: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        if isinstance(value, dict):
            keys.extend(_dotted_keys(value, dotted + "."))
    return keys


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice in one mapping (first on line {seen[key]}); keep one",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict[str, Any]:
    """safe_load one YAML mapping, with errors that name the file and line."""
    if not path.is_file():
        raise UserError(f"Config file not found: {path}. Check the path (it is relative to {Path.cwd()}).")
    try:
        loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"{path}: invalid YAML{where}: {problem}. Fix the syntax there.") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text. Save the recipe as UTF-8.") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UserError(f"{path}: a recipe must be a YAML mapping (key: value), not a {type(loaded).__name__}.")
    return loaded


def _load_layers(path: Path, raw: RawConfig, chain: tuple[Path, ...]) -> None:
    if not path.is_file():
        raise UserError(f"Config file not found: {path}. Check the path (it is relative to {Path.cwd()}).")
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise UserError(f"Recipes extend each other in a cycle: {cycle}. Remove one `extends:`.")
    merge_layer(read_yaml(path), path.parent, str(path), raw, (*chain, path))


def merge_layer(layer: dict[str, Any], folder: Path, origin: str, raw: RawConfig,
                chain: tuple[Path, ...] = ()) -> None:
    """Merge one recipe mapping into `raw`, after the files its `extends:` names (relative to `folder`)."""
    layer = dict(layer)
    parents = layer.pop("extends", None)
    if parents is not None:
        if isinstance(parents, str):
            parents = [parents]
        if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
            raise UserError(f"{origin}: `extends` must be a file path or a list of file paths.")
        for parent in parents:
            parent_path = (folder / parent) if not Path(parent).is_absolute() else Path(parent)
            if not parent_path.is_file():
                raise UserError(f"{origin}: `extends: {parent}` names a file that does not exist ({parent_path}).")
            _load_layers(parent_path, raw, chain)
    raw.merge(layer, origin)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.lr=3e-4` -> (['train', 'lr'], '3e-4'); values are YAML scalars, typed later by the schema."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise UserError(f"Override '{text}' is not of the form key.path=value (e.g. train.lr=3e-4).")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key.split("."), parsed


def apply_override(raw: RawConfig, text: str) -> None:
    path, value = parse_override(text)
    node: Any = raw.data
    for i, part in enumerate(path[:-1]):
        if isinstance(node, list):
            node = _list_item(node, part, path[: i + 1], text)
            continue
        if not isinstance(node, dict):
            raise UserError(f"Override '{text}': '{'.'.join(path[:i])}' is not a section, it holds a value.")
        if part not in node:  # a section the override creates is the command line's, for error messages
            raw.origins[".".join(path[: i + 1])] = COMMAND_LINE
        node = node.setdefault(part, {})
    last = path[-1]
    if isinstance(node, list):
        index = _index(node, last, path, text)
        node[index] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise UserError(f"Override '{text}': '{'.'.join(path[:-1])}' is not a section, it holds a value.")
    raw.origins[".".join(path)] = COMMAND_LINE


def _index(items: list, part: str, path: list[str], text: str) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise UserError(
            f"Override '{text}': '{'.'.join(path)}' needs an index below {len(items)} into that list."
        )
    return int(part)


def _list_item(items: list, part: str, path: list[str], text: str) -> Any:
    return items[_index(items, part, path, text)]


def load_raw(config_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RawConfig:
    raw = RawConfig()
    _load_layers(Path(config_path), raw, ())
    for text in overrides:
        apply_override(raw, text)
    return raw


DEFAULTS_ORIGIN = "(defaults)"  # a pipeline's defaults block: keys there may be unused by some of its stages


def validate(raw: RawConfig) -> RunConfig:
    try:
        config = run_config_class().model_validate(raw.data)
    except ValidationError as exc:
        lines = [_describe(error, raw) for error in exc.errors()]
        raise UserError("Invalid config:\n  - " + "\n  - ".join(lines)) from None
    set_here = [key for key, origin in raw.origins.items() if not origin.endswith(DEFAULTS_ORIGIN)]
    problems = unused_keys(config.stage, set_here)
    problems = [(key, why) for key, why in problems if not any(key.startswith(f"{k}.") for k, _ in problems)]
    if problems:
        reads = ", ".join(stage_specs()[config.stage].allowed())
        spec = stage_specs()[config.stage]
        lines = [f"'{_shown(raw, key)}' (set in {raw.origin_of(key)}) is "
                 + (f"refused by stage {config.stage}: {spec.refuses_why}" if why == "refused" and spec.refuses_why
                    else f"{'refused' if why == 'refused' else 'not used'} by stage {config.stage}")
                 for key, why in problems]
        raise UserError("Invalid config:\n  - " + "\n  - ".join(lines) + f".\n  Remove it; stage {config.stage} "
                        f"reads: {reads}.")
    return config


def _shown(raw: RawConfig, dotted: str) -> str:
    """`key=value` for a setting, `key` for a section (what the user wrote, as an override would say it)."""
    node: Any = raw.data
    for part in dotted.split("."):
        node = node[int(part)] if isinstance(node, list) and part.isdigit() else (
            node.get(part) if isinstance(node, dict) else None)
    if isinstance(node, dict) and len(node) == 1:  # a section with one key: name the key
        key, value = next(iter(node.items()))
        return _shown(raw, f"{dotted}.{key}")
    return dotted if isinstance(node, (dict, list)) or node is None else f"{dotted}={node}"


def load_config(config_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """The one way a recipe becomes a validated `RunConfig`."""
    return validate(load_raw(config_path, overrides))


def check_message(error: dict[str, Any]) -> str:
    """A validator's own words from one pydantic error, without the "Value error, " pydantic puts before them."""
    return error["msg"].removeprefix("Value error, ")


def _describe(error: dict[str, Any], raw: RawConfig) -> str:
    loc = [str(part) for part in error["loc"]]
    dotted = ".".join(loc) or "(top level)"
    where = raw.origin_of(dotted)
    kind = error["type"]
    if kind == "extra_forbidden":
        known = _known_keys(loc[:-1])
        hint = did_you_mean(loc[-1], known)
        listing = f" Known keys here: {', '.join(sorted(known))}." if known and not hint else ""
        return f"unknown key '{dotted}' (set in {where}).{hint}{listing}"
    if kind == "missing":
        return f"missing required key '{dotted}'. Add it to the recipe or pass {dotted}=... on the command line."
    if not loc or error["type"] == "value_error" and isinstance(error.get("input"), dict):
        # a check across keys (a model validator): the message names them; there is no single value to show
        message = check_message(error)
        return f"{message} (section {dotted}; set in {where})." if loc else f"{message}."
    got = error.get("input")
    shown = repr(got) if not isinstance(got, dict) else "a mapping"
    return f"'{dotted}' (set in {where}): {error['msg']}; got {shown}."


def _known_keys(section_path: list[str]) -> list[str]:
    """Field names of the schema section at `section_path` (list indices skipped)."""
    model: type[BaseModel] | None = run_config_class()
    for part in section_path:
        if part.isdigit() or model is None:
            continue
        field = model.model_fields.get(part)
        model = _section_model(field.annotation) if field else None
    return list(model.model_fields) if model else []


def _section_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _section_model(arg)
        if found:
            return found
    return None


def resolved(config: RunConfig) -> dict[str, Any]:
    """The resolved config as data, keeping only the keys its stage reads: loading it again gives the same
    config (and passes the unused-key check)."""
    spec = stage_specs()[config.stage]
    allowed = spec.allowed()

    def keep(tree: dict[str, Any], prefix: str) -> dict[str, Any]:
        kept = {}
        for key, value in tree.items():
            dotted = f"{prefix}{key}"
            if dotted in spec.refuses:
                continue
            if any(a == dotted or a.startswith(f"{dotted}.") for a in allowed):
                whole = dotted in allowed and not any(r.startswith(f"{dotted}.") for r in spec.refuses)
                kept[key] = keep(value, f"{dotted}.") if isinstance(value, dict) and not whole else value
            elif any(dotted.startswith(f"{a}.") for a in allowed):
                kept[key] = value
        return kept

    return keep(config.model_dump(mode="json"), "")


def dump(config: RunConfig) -> str:
    """The resolved config as YAML, in schema order: the keys its stage reads, defaults filled in."""
    return yaml.safe_dump(resolved(config), sort_keys=False, allow_unicode=True)
