"""THINK request dict -> google-genai call, and SDK outcome -> THINK response dict (spec §2.12)."""

from __future__ import annotations

import base64
import binascii
import importlib
from typing import Any

import pydantic
from google.genai import errors, types

THINKING_BUDGETS = {"low": 1024, "medium": 4096, "high": 8192}
QUOTA_DENIED = "Permission denied: LLM quota exceeded or not allowed"
NOT_CONFIGURED = "LLM not configured (set GEMINI_API_KEY)"


def _http_exceptions(name: str) -> tuple[type[BaseException], ...]:
    """google-genai sends through httpx or its fork httpx2, whichever is installed: catch both."""
    found = []
    for module in ("httpx", "httpx2"):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except ImportError:
            continue
    return tuple(found)


_TIMEOUTS = (TimeoutError, *_http_exceptions("TimeoutException"))
_TRANSPORT = (ConnectionError, *_http_exceptions("TransportError"))


class BadRequest(ValueError):
    """A THINK payload the service refuses before calling the model; the message names the field."""


def failure(reason: str) -> dict[str, Any]:
    return {"success": False, "error": reason, "content": ""}


def build_call(
    request: dict[str, Any], default_model: str
) -> tuple[str, list[types.Part], types.GenerateContentConfig]:
    """(model, contents, config) for `client.models.generate_content` from a THINK payload."""
    if not isinstance(request, dict):
        raise BadRequest(f"THINK request must be a JSON object, got {type(request).__name__}")
    prompt = request.get("prompt", "")
    if not isinstance(prompt, str):
        raise BadRequest(f"THINK request: 'prompt' must be a string, got {type(prompt).__name__}")
    contents: list[types.Part] = []
    if prompt:
        contents.append(types.Part.from_text(text=prompt))
    image = request.get("image")
    if image is not None:
        contents.append(_image_part(image))
    if not contents:
        raise BadRequest("THINK request: needs a non-empty 'prompt' or an 'image'")

    model = request.get("model") or default_model
    if not isinstance(model, str):
        raise BadRequest(f"THINK request: 'model' must be a string, got {type(model).__name__}")
    config: dict[str, Any] = {}
    system = request.get("system_instruction")
    if system is not None:
        if not isinstance(system, str):
            raise BadRequest("THINK request: 'system_instruction' must be a string")
        config["system_instruction"] = system
    temperature = request.get("temperature")
    if temperature is not None:
        if (
            not isinstance(temperature, int | float)
            or isinstance(temperature, bool)
            or not 0 <= temperature <= 2
        ):
            raise BadRequest(f"THINK request: 'temperature' must be a number in [0, 2], got {temperature!r}")
        config["temperature"] = float(temperature)
    max_tokens = request.get("max_tokens")
    if max_tokens is not None:
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise BadRequest(f"THINK request: 'max_tokens' must be an int >= 1, got {max_tokens!r}")
        config["max_output_tokens"] = max_tokens
    level = request.get("thinking_level")
    if level is not None:
        if level not in THINKING_BUDGETS:
            raise BadRequest(
                f"THINK request: 'thinking_level' must be one of {list(THINKING_BUDGETS)}, got {level!r}"
            )
        config["thinking_config"] = types.ThinkingConfig(thinking_budget=THINKING_BUDGETS[level])
    tools = request.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise BadRequest("THINK request: 'tools' must be a list of function specs")
        config["tools"] = [
            types.Tool(function_declarations=[_function(spec, i) for i, spec in enumerate(tools)])
        ]
    return model, contents, types.GenerateContentConfig(**config)


def _image_part(image: Any) -> types.Part:
    if not isinstance(image, dict) or not isinstance(image.get("data"), str):
        raise BadRequest('THINK request: \'image\' must be {"data": base64 string, "mime_type": string}')
    mime = image.get("mime_type", "image/png")
    if not isinstance(mime, str) or "/" not in mime:
        raise BadRequest(f"THINK request: 'image.mime_type' must be a MIME type like image/png, got {mime!r}")
    try:
        data = base64.b64decode(image["data"], validate=True)
    except binascii.Error as exc:
        raise BadRequest(f"THINK request: 'image.data' is not valid base64 ({exc})") from None
    return types.Part.from_bytes(data=data, mime_type=mime)


def _function(spec: Any, index: int) -> types.FunctionDeclaration:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise BadRequest(f"THINK request: 'tools[{index}]' must be an object with a string 'name'")
    try:
        return types.FunctionDeclaration(
            name=spec["name"],
            description=spec.get("description"),
            parameters_json_schema=spec.get("parameters"),
        )
    except pydantic.ValidationError as exc:
        raise BadRequest(f"THINK request: 'tools[{index}]' is not a valid function spec: {exc}") from None


def success(response: types.GenerateContentResponse) -> dict[str, Any]:
    """The THINK answer for a model response; a response without text or calls is a failure."""
    usage = response.usage_metadata
    tokens = (usage.total_token_count or 0) if usage else 0
    calls = [{"name": c.name, "args": c.args or {}} for c in response.function_calls or []]
    parts = (
        response.candidates[0].content.parts
        if response.candidates and response.candidates[0].content
        else None
    )
    text = "".join(p.text for p in parts or [] if p.text and not p.thought)
    if not text and not calls:
        finish = response.candidates[0].finish_reason if response.candidates else None
        blocked = response.prompt_feedback.block_reason if response.prompt_feedback else None
        return failure(f"model error: empty answer (finish_reason={finish}, block_reason={blocked})")
    result: dict[str, Any] = {"success": True, "content": text, "tokens": tokens}
    if calls:
        result["function_calls"] = calls
    return result


def reason(exc: BaseException, timeout_s: float) -> str:
    """A failure reason naming the class of fault: timeout, 429, 5xx, bad key, model error, malformed."""
    if isinstance(exc, _TIMEOUTS):
        return f"timeout: no answer from the model within {timeout_s:g} s"
    if isinstance(exc, errors.APIError):
        detail = f"{exc.code} {exc.status}: {exc.message}"
        if exc.code == 429:
            return f"rate limited ({detail})"
        if exc.code in (401, 403) or (exc.code == 400 and "API key" in str(exc.message)):
            return f"bad API key ({detail})"
        if 500 <= exc.code < 600:
            return f"server error ({detail})"
        return f"model error ({detail})"
    if isinstance(exc, errors.UnknownApiResponseError | pydantic.ValidationError | ValueError):
        return f"malformed response from the model: {str(exc)[:200]}"
    if isinstance(exc, _TRANSPORT):
        return f"connection failed: {type(exc).__name__}: {exc}"
    return f"LLM call failed: {type(exc).__name__}: {exc}"
