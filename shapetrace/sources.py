"""Resolve a model spec: a torchvision name, one of ours, `file.py:Name`, `pkg.mod:Name`.

Models are built with random weights on the meta device, so nothing is downloaded or
initialised; builders that cannot run on meta get their parameters moved there as they are
registered.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn

from shapetrace.errors import (
    CannotAnalyse,
    UsageError,
    caused_by,
    describe_exit,
    first_line,
    user_code,
)
from shapetrace.inputs import TensorSpec


@dataclass
class ModelSource:
    """A resolved model: how to build it and what it is usually fed."""

    spec: str
    builder: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    default_inputs: list[TensorSpec] | None = None
    family: str = "user"

    def build(self) -> nn.Module:
        """Build the model with its parameters on the meta device."""
        own_errors: list[BaseException] = []
        try:
            with user_code(self.spec, "in its constructor"):
                model = _build_on_meta(lambda: self.builder(**self.kwargs), own_errors)
        except ShapetraceErrors:
            raise
        except Exception as exc:
            if any(caused_by(exc, own) for own in own_errors):
                raise  # shapetrace's bug while building: an internal error, not the model's
            self._constructor_failed(exc)
        if not isinstance(model, nn.Module):
            raise UsageError(f"{self.spec} returned {type(model).__name__}, not a torch.nn.Module")
        check_analysable(self.spec, model)
        return model

    def _constructor_failed(self, exc: Exception) -> NoReturn:
        # With --model-args, a TypeError from the constructor means they do not fit it: an
        # unknown keyword (torchvision builders pass **kwargs on) or a value of a wrong type.
        if isinstance(exc, TypeError) and self.kwargs:
            raise UsageError(f"--model-args do not match {self.spec}: {first_line(exc)}") from exc
        raise CannotAnalyse(
            f"{self.spec}: the constructor raised {type(exc).__name__}: {first_line(exc)}"
        ) from exc


ShapetraceErrors = (CannotAnalyse, UsageError)


def check_analysable(spec: str, model: nn.Module) -> None:
    """Refuse, in one line, models that no capture can follow: TorchScript modules (neither fx
    nor module hooks work on them) and module trees with a cycle (a module holding itself or an
    ancestor makes `train()`, `named_modules()` and `deepcopy` recurse forever)."""
    if isinstance(model, torch.jit.ScriptModule):
        raise CannotAnalyse(
            f"{spec} is a TorchScript module ({type(model).__name__}): shapetrace needs the "
            "Python nn.Module it was scripted or traced from"
        )
    cycle = _module_cycle(model)
    if cycle is not None:
        path, ancestor = cycle
        held = f"'{ancestor}'" if ancestor else "the model itself"
        raise CannotAnalyse(
            f"{spec}: module '{path}' is {held}: a module that contains itself cannot be "
            "analysed (keep the reference outside nn.Module attributes)"
        )


def _module_cycle(model: nn.Module) -> tuple[str, str] | None:
    """A child path that leads back to one of its ancestors, and that ancestor's path; None for
    a tree (modules shared between branches are fine). Iterative, so depth costs no stack."""
    on_path: dict[int, str] = {}
    done: set[int] = set()
    stack: list[tuple[str, nn.Module, Iterator[tuple[str, nn.Module | None]]]] = [
        ("", model, iter(list(model._modules.items())))
    ]
    on_path[id(model)] = ""
    while stack:
        path, module, children = stack[-1]
        for name, child in children:
            if child is None or id(child) in done:
                continue
            child_path = f"{path}.{name}" if path else name
            if id(child) in on_path:
                return child_path, on_path[id(child)]
            on_path[id(child)] = child_path
            stack.append((child_path, child, iter(list(child._modules.items()))))
            break
        else:
            stack.pop()
            del on_path[id(module)]
            done.add(id(module))
    return None


@contextlib.contextmanager
def _parameters_on_meta(own_errors: list[BaseException]) -> Iterator[None]:
    """Move every parameter and buffer to meta as it is registered (for builders that do
    arithmetic on real tensors, e.g. regnet's width quantisation). An error in the moving itself
    is shapetrace's: it is added to `own_errors`."""
    register_parameter = nn.Module.register_parameter
    register_buffer = nn.Module.register_buffer

    @contextlib.contextmanager
    def own_code() -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            own_errors.append(exc)
            raise

    def on_meta_parameter(module: nn.Module, name: str, param: Any) -> None:
        with own_code():
            if param is not None and param.device.type != "meta":
                kwargs = dict(param.__dict__)
                param = type(param)(param.to("meta"), requires_grad=param.requires_grad)
                param.__dict__.update(kwargs)
        register_parameter(module, name, param)

    def on_meta_buffer(module: nn.Module, name: str, tensor: Any, persistent: bool = True) -> None:
        with own_code():
            if tensor is not None:
                tensor = tensor.to("meta")
        register_buffer(module, name, tensor, persistent=persistent)

    nn.Module.register_parameter = on_meta_parameter  # type: ignore[method-assign,assignment]
    nn.Module.register_buffer = on_meta_buffer  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        nn.Module.register_parameter = register_parameter  # type: ignore[method-assign]
        nn.Module.register_buffer = register_buffer  # type: ignore[method-assign]


@contextlib.contextmanager
def _no_weight_init() -> Iterator[None]:
    """Make `torch.nn.init`'s initialisers return their tensor untouched: on meta there are no
    values to fill, and filling them costs two thirds of building a ResNet-50."""
    import torch.nn.init as init

    saved = {
        name: fn
        for name, fn in vars(init).items()
        if name.endswith("_") and not name.startswith("_") and callable(fn)
    }

    def untouched(tensor: Any, *_: Any, **__: Any) -> Any:
        return tensor

    try:
        for name in saved:
            setattr(init, name, untouched)
        yield
    finally:
        for name, fn in saved.items():
            setattr(init, name, fn)


def _build_on_meta(make: Callable[[], Any], own_errors: list[BaseException]) -> Any:
    """Build under the meta device; if an op cannot run on meta (a builder reading a tensor's
    value, or mixing meta with real tensors), build on CPU with parameters moved to meta."""
    from shapetrace.passes.shapes import MetaWatch

    try:
        with torch.device("meta"), _no_weight_init():
            return make()
    except (RuntimeError, NotImplementedError, TypeError):
        # What an op on meta tensors raises (`.item()`, `.tolist()`, `.numpy()`, a device
        # mix); anything else is the constructor's own error, raised from this one build.
        pass
    # Only a failed build pays for the watch (every aten op through Python, a third of the
    # build's time): the build runs again under it, to learn whether meta is to blame.
    watch = MetaWatch()
    try:
        with torch.device("meta"), watch, _no_weight_init():
            return make()
    except Exception as exc:
        try:
            fault = watch.fault_of(exc)
        except Exception as own:
            own_errors.append(own)
            raise
        if fault is None:
            raise
    with _parameters_on_meta(own_errors):
        return make()


# -- torchvision ---------------------------------------------------------------------------

_FAMILIES = ("quantization", "segmentation", "detection", "video", "optical_flow")


def torchvision_names() -> dict[str, str]:
    """Every `torchvision.models.list_models()` name mapped to its family."""
    import torchvision.models as tvm

    families = {name: "classification" for name in tvm.list_models(module=tvm)}
    for fam in _FAMILIES:
        for name in tvm.list_models(module=getattr(tvm, fam)):
            families[name] = fam
    return families


def _torchvision_default_inputs(name: str, family: str) -> list[TensorSpec]:
    from torchvision.models import get_model_weights

    # Metadata only: nothing is downloaded. Of several weights, the smallest crop is the one a
    # freshly built model expects (vit_h_14 is built for 224; only its SWAG weights use 518).
    variants = list(get_model_weights(name))
    weights = min(variants, key=lambda w: _crop_of(w) or 10**6)
    keywords = getattr(weights.transforms, "keywords", {}) or {}
    crop = keywords.get("crop_size")
    if family == "optical_flow":
        frame = TensorSpec((1, 3, 520, 960))
        return [frame, frame]
    if family == "segmentation":
        size = keywords.get("resize_size", 520)
        size = size[0] if isinstance(size, (tuple, list)) else size
        return [TensorSpec((1, 3, size, size))]
    if family == "detection":
        return [TensorSpec((1, 3, 800, 800))]
    if family == "video":
        h, w = crop if isinstance(crop, (tuple, list)) else (crop or 112, crop or 112)
        frames = max(16, int(weights.meta.get("min_temporal_size", 16)))
        return [TensorSpec((1, 3, frames, h, w))]
    size = crop[0] if isinstance(crop, (tuple, list)) else (crop or 224)
    return [TensorSpec((1, 3, size, size))]


def _crop_of(weights: Any) -> int | None:
    crop = (getattr(weights.transforms, "keywords", {}) or {}).get("crop_size")
    return crop[0] if isinstance(crop, (tuple, list)) else crop


# Arguments that make a torchvision builder load (and maybe download) a checkpoint. Weights do
# not change shapes, and torchvision unpickles a cached checkpoint with weights_only=False.
WEIGHT_ARGS = frozenset({"weights", "weights_backbone", "pretrained", "pretrained_backbone"})


def without_weights(spec: str, model_args: dict[str, Any]) -> dict[str, Any]:
    """`model_args` without the arguments that would load weights, with one line on stderr
    naming what is ignored (a `None` or `False` one is dropped silently: it loads nothing)."""
    from torchvision.models import WeightsEnum

    kept: dict[str, Any] = {}
    ignored: list[str] = []
    for key, value in model_args.items():
        if key in WEIGHT_ARGS or isinstance(value, WeightsEnum):
            if value is not None and value is not False:
                ignored.append(f"{key}={_weights_text(value)}")
            continue
        kept[key] = value
    if ignored:
        print(
            "shapetrace: weights are not loaded (shapes do not depend on them): ignoring "
            + ", ".join(ignored),
            file=sys.stderr,
        )
    return kept


def _weights_text(value: Any) -> str:
    text = value if isinstance(value, str) else getattr(value, "name", None) or repr(value)
    text = str(text)
    return text if text.isprintable() and len(text) <= 60 else repr(text[:60])


@contextlib.contextmanager
def _no_checkpoints(spec: str) -> Iterator[None]:
    """Whatever a builder is given, it never loads a checkpoint: loading would unpickle a
    cached file (weights_only=False) or download one and print on stdout."""
    from torchvision.models import WeightsEnum

    get_state_dict = WeightsEnum.get_state_dict

    def refuse(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
        raise UsageError(
            f"{spec} asked for the weights {self}; shapetrace never loads weights "
            "(shapes do not depend on them)"
        )

    WeightsEnum.get_state_dict = refuse  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        WeightsEnum.get_state_dict = get_state_dict  # type: ignore[method-assign]


def _torchvision_builder(name: str, family: str) -> Callable[..., Any]:
    def build(**kwargs: Any) -> Any:
        from torchvision.models import get_model

        kwargs["weights"] = None
        if family in ("segmentation", "detection"):
            kwargs["weights_backbone"] = None
        if name in ("googlenet", "inception_v3", "quantized_googlenet", "quantized_inception_v3"):
            kwargs.setdefault("init_weights", False)  # random init via scipy is slow and useless
        with _no_checkpoints(name):
            return get_model(name, **kwargs)

    return build


# -- user files and modules ----------------------------------------------------------------


def _load_file(path_text: str) -> Any:
    path = Path(path_text)
    if not path.exists():
        raise UsageError(f"{path_text}: no such file")
    if path.is_dir():
        raise UsageError(f"{path_text}: is a directory, expected a Python file")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    module_name = f"shapetrace_user_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{path_text}: cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise UsageError(f"{path_text}:{exc.lineno}: syntax error: {exc.msg}") from exc
    except Exception as exc:
        raise UsageError(
            f"{path_text}: importing it failed: {type(exc).__name__}: {first_line(exc)}"
        ) from exc
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a script that runs and exits when imported
        raise UsageError(f"{path_text}: importing it {describe_exit(exc)}") from exc
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def _load_import_path(module_path: str) -> Any:
    try:
        return importlib.import_module(module_path)
    except ModuleNotFoundError as exc:
        raise UsageError(f"cannot import '{module_path}': {first_line(exc)}") from exc
    except Exception as exc:
        raise UsageError(
            f"importing '{module_path}' failed: {type(exc).__name__}: {first_line(exc)}"
        ) from exc
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise UsageError(f"importing '{module_path}' {describe_exit(exc)}") from exc


def _user_source(spec: str, model_args: dict[str, Any]) -> ModelSource:
    where, _, attr = spec.rpartition(":")
    module = _load_file(where) if where.endswith(".py") else _load_import_path(where)
    if not hasattr(module, attr):
        candidates = [n for n in dir(module) if not n.startswith("_")]
        hint = difflib.get_close_matches(attr, candidates, n=3)
        extra = f" (did you mean {', '.join(hint)}?)" if hint else ""
        raise UsageError(f"{where} has no '{attr}'{extra}")
    target = getattr(module, attr)
    if isinstance(target, nn.Module):
        check_analysable(spec, target)
        return ModelSource(spec, lambda: target, family="user")
    # Only what builds a model is ever called: an nn.Module class or a plain function. Any other
    # callable (os.system, print, a class that is not a module, an object with __call__) would
    # run code that has nothing to do with a model.
    if isinstance(target, type):
        if not issubclass(target, nn.Module):
            raise UsageError(
                f"{spec} is the class {target.__name__}, which is not an nn.Module: name an "
                "nn.Module class or a function returning one"
            )
        if issubclass(target, torch.jit.ScriptModule):
            raise CannotAnalyse(
                f"{spec} is a TorchScript class: shapetrace needs a Python nn.Module"
            )
    elif not inspect.isfunction(target):
        raise UsageError(
            f"{spec} is a {type(target).__name__}, not an nn.Module class or a function "
            "returning one"
        )
    _check_signature(spec, target, model_args)
    return ModelSource(spec, target, kwargs=model_args, family="user")


def _check_signature(spec: str, target: Callable[..., Any], model_args: dict[str, Any]) -> None:
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(**model_args)
    except TypeError as exc:
        raise UsageError(f"--model-args do not match {spec}{signature}: {exc}") from exc


# -- entry point -----------------------------------------------------------------------------


def known_names() -> list[str]:
    """Every model name shapetrace knows: ours and torchvision's."""
    from shapetrace.zoo import ZOO

    return sorted(set(ZOO) | set(torchvision_names()))


def resolve(spec: str, model_args: dict[str, Any] | None = None) -> ModelSource:
    """Turn a model spec the user typed (command line or Python) into a ModelSource, or raise
    UsageError with the closest names. `file.py:Name` and `package.module:Name` import the
    user's code: never pass a spec read from a report here (see `resolve_from_report`)."""
    model_args = dict(model_args or {})
    if ":" in spec and not spec.startswith(":"):
        return _user_source(spec, model_args)
    return _named_source(spec, model_args)


def resolve_from_report(spec: Any, model_args: Any = None) -> ModelSource:
    """Resolve a report's `source.model` and `source.model_args` to rebuild its model.

    A report is data from anywhere, so this runs no code of the report's choosing: only
    torchvision's names and shapetrace's own are rebuilt, with `model_args` that are plain JSON
    values. A file or import path is refused in one line (UsageError) asking the user to name
    the model on the command line."""
    if not isinstance(spec, str) or not spec:
        raise UsageError("the report does not name its model; name it on the command line")
    shown = spec if spec.isprintable() and len(spec) <= 200 else repr(spec[:200])
    if ":" in spec or "/" in spec or "\\" in spec or spec.endswith(".py"):
        raise UsageError(
            f"the report's model '{shown}' is code of your own, which shapetrace does not run "
            f"from a report: name it on the command line (shapetrace {shown} --input ...)"
        )
    if model_args is None:
        model_args = {}
    if not isinstance(model_args, dict) or not _plain_json(model_args):
        raise UsageError(
            f"the report's model_args for '{shown}' are not plain JSON values; "
            "name the model and its --model-args on the command line"
        )
    return _named_source(shown, dict(model_args))


def _plain_json(value: Any, depth: int = 0) -> bool:
    """Whether `value` is made of JSON's own types only, nested at most 32 deep."""
    if depth > 32:
        return False
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list):
        return all(_plain_json(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_json(v, depth + 1) for k, v in value.items())
    return False


def _named_source(spec: str, model_args: dict[str, Any]) -> ModelSource:
    """One of shapetrace's models or a torchvision name; never code outside those two."""
    from shapetrace.zoo import ZOO

    if spec in ZOO:
        _check_signature(spec, ZOO[spec], model_args)
        return ModelSource(
            spec, ZOO[spec], model_args, [TensorSpec((1, 3, 224, 224))], family="zoo"
        )
    families = torchvision_names()
    if spec in families:
        family = families[spec]
        builder = _torchvision_builder(spec, family)
        return ModelSource(
            spec,
            builder,
            without_weights(spec, model_args),
            _torchvision_default_inputs(spec, family),
            family,
        )
    if spec.endswith(".py"):
        raise UsageError(f"{spec}: name the model class or factory, e.g. {spec}:Net")
    close = difflib.get_close_matches(spec, sorted(set(ZOO) | set(families)), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UsageError(f"unknown model '{spec}'{hint} (see `shapetrace --list-models`)")
