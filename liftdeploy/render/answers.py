"""The Copier answers <-> spec mapping: the questions `copier copy` asks, where each answer
lands in the spec, the presets that supply their defaults (`blank` by default), and the answers
a spec records so `copier copy` and `liftdeploy render` write the same answers file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from liftdeploy.render.stop import stop_render

if TYPE_CHECKING:
    from liftdeploy.spec.model import ModelDeployment

# Answers `copier copy` asks after the preset, and where each lands in the spec.
QUESTION_FIELDS: dict[str, str] = {
    "name": "name",
    "description": "description",
    "model_id": "model.id",
    "model_revision": "model.revision",
    "gpu_type": "gpu.type",
    "gpu_count": "gpu.count",
    "min_containers": "runtime.min_containers",
    "max_containers": "runtime.max_containers",
    "max_concurrent_requests": "runtime.max_concurrent_requests",
}
# Answers that stand for "not set" (None in the spec): Copier answers are typed str/int.
UNSET_ANSWERS: dict[str, Any] = {"model_revision": "", "max_containers": 0}
INT_QUESTIONS = ("gpu_count", "min_containers", "max_containers", "max_concurrent_requests")
BLANK_PRESET = "blank"
"""The clean start for a model that is not one of the examples (liftdeploy.render.presets)."""
CUSTOM_PRESET = "custom"
"""The preset `liftdeploy render` records for a spec that is not one of the examples."""

PRESETS_DIR = "examples"
"""Presets live in the template root's examples/ (the checkout's, or the wheel's copy), so a
template version always renders its own presets."""


def preset_path(template_root: Path, preset: str) -> Path:
    return template_root / PRESETS_DIR / f"{preset}.yaml"


def presets(template_root: Path) -> list[str]:
    return sorted(path.stem for path in (template_root / PRESETS_DIR).glob("*.yaml"))


def default_preset() -> str:
    """Always blank, even for an example's model: an example preset carries that service's
    Volumes, Dicts, Secrets and CORS origins, so it is used only when asked for by name."""
    return BLANK_PRESET


def preset_answer(preset: str, question: str, template_root: Path, answers: dict[str, Any]) -> Any:
    """The preset's value for one question: the default `copier copy` offers (the blank
    preset's reads the answers so far)."""
    from liftdeploy.spec.specfile import read_yaml

    if preset == BLANK_PRESET:
        from liftdeploy.render import presets as blank

        return blank.default(question, {q: answers[q] for q in blank.QUESTIONS if q in answers})
    path = preset_path(template_root, preset)
    if not path.is_file():  # custom or a typo: the render stops with one line that says so
        return 0 if question in INT_QUESTIONS else ""
    node: Any = read_yaml(path)
    for key in QUESTION_FIELDS[question].split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return UNSET_ANSWERS.get(question, "") if node is None else node


def spec_text_from_answers(answers: dict[str, Any], template_root: Path) -> str:
    """deployment.yaml's text: the text `liftdeploy render` passed, else the preset's file with
    the asked values set in place (comments and layout kept; unchanged when nothing differs)."""
    if answers.get("spec_yaml"):
        return str(answers["spec_yaml"])
    from liftdeploy.spec.specfile import dump_yaml, parse_yaml, read_text

    preset = str(answers.get("preset") or "")
    if preset == BLANK_PRESET:
        return _blank_text(answers)
    if preset == CUSTOM_PRESET:
        stop_render(
            "this service was rendered by `liftdeploy render` from a spec of its own, "
            "which Copier's answers do not hold; regenerate it with `liftdeploy render .`"
        )
    path = preset_path(template_root, preset)
    if not path.is_file():
        stop_render(
            f"preset {preset!r} is not one of the examples; choose one of "
            f"{', '.join([*presets(template_root), BLANK_PRESET])}"
        )
    text = read_text(path)
    data = parse_yaml(text, source=str(path))
    changed = False
    for question, dotted in QUESTION_FIELDS.items():
        if question not in answers:
            continue
        value = _spec_value(question, answers[question])
        *parents, last = dotted.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        if node.get(last) != value and not (value is None and last not in node):
            node[last] = value
            changed = True
    return dump_yaml(data) if changed else text


def answers_for_spec(text: str, source: str, template_root: Path) -> dict[str, Any]:
    """The answers `copier copy` would record for this spec: its preset (or custom) and the
    asked values, so both ways of rendering write the same answers file."""
    spec = validated_spec(text, source)
    base = spec.model_dump(include={"name", "description", "model", "gpu", "runtime"})
    answers: dict[str, Any] = {}
    for question, dotted in QUESTION_FIELDS.items():
        node: Any = base
        for key in dotted.split("."):
            node = node.get(key)
        answers[question] = UNSET_ANSWERS.get(question, "") if node is None else node
    matching = [
        name
        for name in presets(template_root)
        if spec_text_from_answers({**answers, "preset": name}, template_root) == text
    ]
    if not matching and _is_blank(text):
        from copier.errors import UserMessageError

        from liftdeploy.render.presets import dicts_answer

        blank = {**answers, "dicts": dicts_answer(spec.name, spec.storage.dicts)}
        try:
            if _blank_text({**blank, "preset": BLANK_PRESET}) == text:
                return {"preset": BLANK_PRESET, **blank}
        except UserMessageError:  # not sizeable here (offline, say): record the whole spec
            pass
    return {"preset": matching[0] if matching else CUSTOM_PRESET, **answers}


def _is_blank(text: str) -> bool:
    from liftdeploy.render.presets import MARKER

    return MARKER in text.splitlines()[:3]


def _blank_text(answers: dict[str, Any]) -> str:
    """The blank preset's spec for the answers; the planner's or the spec's message stops Copier."""
    from liftdeploy.errors import LiftdeployError
    from liftdeploy.render import presets as blank

    try:
        return blank.spec_text({q: answers[q] for q in blank.QUESTIONS if q in answers})
    except LiftdeployError as exc:
        stop_render(str(exc))


def _spec_value(question: str, value: Any) -> Any:
    """The spec value for an answer: the question's "not set" answer becomes None."""
    if question in UNSET_ANSWERS and value in (UNSET_ANSWERS[question], None):
        return None
    return value


def validated_spec(text: str, source: str) -> ModelDeployment:
    """The spec the text holds, checked by the spec's own models; else its message stops Copier."""
    from liftdeploy.errors import SpecError
    from liftdeploy.spec.specfile import parse_yaml, spec_from_data

    try:
        return spec_from_data(parse_yaml(text, source=source), source=source)
    except SpecError as exc:
        stop_render(str(exc))
