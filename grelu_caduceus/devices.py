"""The one rule for a device request: a torch device string ("cpu", "cuda", "cuda:N") or a Lightning
accelerator ("gpu", "cuda") that asks for a GPU torch cannot see is a :class:`DeviceError` (a
UserError: one line on the command line) naming the option and the fix, checked before any work.

Example::

    from grelu_caduceus.devices import check_device
    device = check_device("cuda:0")                  # Python: "device='cuda:0' asks for a GPU ..."
    device = check_device(args.device, "--device")   # command line: "--device cuda:0 asks for a GPU ..."
"""

from __future__ import annotations

from .errors import UserError


class DeviceError(UserError, ValueError):
    """A device that does not exist or is not available here; the message names the option and the fix."""


def _spell(option: str, value) -> str:
    """How the user wrote it: ``--device cuda`` on the command line, ``device='cuda'`` in Python."""
    return f"{option} {value}" if option.startswith("-") else f"{option}={value!r}"


def gpu_missing(asked: str, fix: str) -> DeviceError:
    """The error for a request (``asked``, as the user wrote it) of a GPU that torch does not see."""
    import torch

    why = ("this torch is built without CUDA" if not torch.backends.cuda.is_built()
           else "no GPU is visible (check CUDA_VISIBLE_DEVICES and the driver)")
    return DeviceError(f"{asked} asks for a GPU but torch sees none ({why}): {fix}.")


def check_device(device, option: str = "device"):
    """``device`` as a ``torch.device``, checked: a name torch knows, and a GPU that is there.

    Args:
        device: "cpu", "cuda", "cuda:N" (or a torch.device); None means "cpu".
        option: how the caller names it in messages: "device" (Python) or "--device" (command line).

    Raises:
        DeviceError: an unknown name (e.g. "gpu"), a CUDA device without a visible GPU, or a GPU index
            past the last one.
    """
    import torch

    if device is None:
        return torch.device("cpu")
    if isinstance(device, torch.device):
        parsed = device
    else:
        try:
            parsed = torch.device(str(device))
        except (RuntimeError, TypeError, ValueError):
            raise DeviceError(f"{_spell(option, device)} is not a device: use cpu, cuda or cuda:N "
                              f"(e.g. {_spell(option, 'cpu')}).") from None
    cpu = _spell(option, "cpu")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise gpu_missing(_spell(option, device), f"use {cpu}")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise DeviceError(f"{_spell(option, device)}: there {'is' if count == 1 else 'are'} only {count} "
                              f"GPU{'s' if count != 1 else ''} (cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})"
                              f"; use {_spell(option, 'cuda:0')} or {cpu}.")
    elif parsed.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DeviceError(f"{_spell(option, device)}: Apple's MPS backend is not available here; use {cpu}.")
    elif parsed.type != "cpu":
        raise DeviceError(f"{_spell(option, device)} is not supported: use cpu, cuda or cuda:N.")
    return parsed


def check_accelerator(accelerator, asked: str, fix: str) -> None:
    """A Lightning ``accelerator`` of "gpu"/"cuda" needs a visible GPU; ``asked`` and ``fix`` are the
    request and the remedy in the caller's words (e.g. "trainer=gpu", "use trainer=cpu")."""
    import torch

    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise gpu_missing(asked, fix)


def lightning_devices(device: str, option: str = "device"):
    """A checked torch device string as gReLU's ``devices`` argument: "cpu", or the GPU's index."""
    parsed = check_device(device, option)
    return "cpu" if parsed.type == "cpu" else (parsed.index or 0)


__all__ = ["DeviceError", "check_accelerator", "check_device", "gpu_missing", "lightning_devices"]
