"""Loader keyword arguments an allowlist entry may not carry (issue 17).

An entry names a model; these keywords would change how it loads: a pickle or another file or URL
(timm's ``checkpoint_path``, ``pretrained_cfg_overlay``), or code from the model's repository
(``trust_remote_code``). :func:`app.model_args.check_settings` refuses them, from flags and settings files
alike, with one line and exit status 2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.settings import Settings

# Loader keyword arguments that would load a pickle, another file or URL, or run the repository's own code.
# Refused from flags and settings files alike: an allowlist entry names a model, never how to load it.
DENIED_TIMM_KWARGS = frozenset(
    {"checkpoint_path", "pretrained_cfg", "pretrained_cfg_overlay", "pretrained", "hf_hub_id", "url", "file"}
)
DENIED_TEXT_KWARGS = frozenset(
    {
        "trust_remote_code",
        "code_revision",
        "use_safetensors",  # False falls back to pickled .bin weights
        "weights_only",
        "from_tf",
        "from_flax",
        "gguf_file",
        "revision",
        "subfolder",
        "local_files_only",
        "_commit_hash",
    }
)


def denied_message(what: str, kwargs: Any, denied: frozenset[str]) -> str | None:
    """One line naming the keys of ``kwargs`` on the ``denied`` list (case-insensitive); None when clean."""
    bad = sorted(str(k) for k in (kwargs or {}) if str(k).lower() in denied)
    if not bad:
        return None
    return (
        f"{what}: {', '.join(bad)} {'is' if len(bad) == 1 else 'are'} not allowed (it could load a pickle or "
        "run code from outside the allowlist); name the weights as the model instead"
    )


def settings_message(settings: Settings) -> str | None:
    """The first allowlist entry of ``settings`` that carries a denied keyword, as one line."""
    for v in [*settings.models.vision_models, *settings.models.extra_vision_models]:
        if message := denied_message(f"vision model {v.id!r}", v.timm_kwargs, DENIED_TIMM_KWARGS):
            return message
    for t in [*settings.models.text_models, *settings.models.extra_text_models]:
        if message := denied_message(f"text model {t.id!r}", t.config, DENIED_TEXT_KWARGS):
            return message
    return None
