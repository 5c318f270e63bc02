"""The device tier: run accelerator code paths on a CPU-only machine and catch device mixing.

Inside :func:`fake_cuda`, tensors put on ``cuda`` (``.to("cuda")``, ``.cuda()``, a factory with
``device="cuda"``, a module moved there) compute on the CPU but carry a device tag: they report
``device`` ``cuda:0`` (``cuda:N`` when put there) and every result computed from them is tagged too. An operation that mixes a
tagged tensor with an untagged CPU tensor raises what CUDA raises ("Expected all tensors to be on
the same device"), and so does one that mixes ``cuda:0`` with ``cuda:1`` (a per-rank bug), except where CUDA allows it (0-dim CPU tensors as scalars, CPU index tensors in
``__getitem__``); ``.numpy()`` of a tagged tensor raises too, as on a GPU.

Unlike ``FakeTensorMode`` the data are real, so data-dependent shapes (``torch.unique``, boolean
masks), metrics, post-processing and whole Lightning runs work. What it cannot reach: kernels
that only exist on the GPU (cuDNN's LSTM, fused optimizers, NCCL); autocast for ``cuda`` is off
on a machine without one, so bf16 is tested separately (bf16-mixed on the CPU).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

CUDA = torch.device("cuda", 0)
CPU = torch.device("cpu")


class DeviceMismatch(RuntimeError):
    """What CUDA raises when an operation mixes devices."""


class OnCuda(torch.Tensor):
    """A CPU tensor that says it lives on ``cuda:<index>`` (one subclass per index)."""

    index = 0


_ON: dict[int, type] = {0: OnCuda}


def _on(index: int) -> type:
    if index not in _ON:
        _ON[index] = type(f"OnCuda{index}", (OnCuda,), {"index": index})
    return _ON[index]


def _tagged(x) -> bool:
    return isinstance(x, OnCuda)


def _cuda_of(x) -> torch.device:
    return torch.device("cuda", type(x).index)


def _as_device(x, device: torch.device):
    if not isinstance(x, torch.Tensor):
        return x
    if device.type == "cuda":
        cls = _on(device.index or 0)
        return x if type(x) is cls else _retag(x, cls)
    return _retag(x, torch.Tensor) if _tagged(x) else x


def _retag(x: torch.Tensor, cls: type) -> torch.Tensor:
    with torch._C.DisableTorchFunctionSubclass():
        out = x.as_subclass(cls)
    if isinstance(x, torch.nn.Parameter) or getattr(x, "_is_param", False):
        out._is_param = True  # nn.Parameter(custom tensor) keeps parameter-ness this way
    return out


def _device_of(value) -> torch.device | None:
    if value is None:
        return None
    if isinstance(value, int):
        return torch.device("cuda", value)
    device = torch.device(value)
    return torch.device("cuda", device.index or 0) if device.type == "cuda" else device


_NEW = {torch.Tensor.new_tensor, torch.Tensor.new_zeros, torch.Tensor.new_ones, torch.Tensor.new_full,
        torch.Tensor.new_empty}
_MOVES = {torch.Tensor.to, torch.Tensor.cuda, torch.Tensor.cpu, torch.Tensor.type_as} | _NEW
_ALLOWS_CPU_INDEX = {torch.Tensor.__getitem__}
_UNCHECKED = {torch._has_compatible_shallow_copy_type}  # type queries, no computation


def _is_device(a) -> bool:
    return isinstance(a, torch.device) or (isinstance(a, str) and a.split(":")[0] in ("cuda", "cpu"))


def _move_target(func, args, kwargs) -> torch.device | None:
    """The device a move (``.to``, ``.cuda``, ``.new_zeros`` ...) puts its result on (None: where it was)."""
    if func is torch.Tensor.cuda:
        return CUDA
    if func is torch.Tensor.cpu:
        return CPU
    if func is torch.Tensor.type_as:
        return _cuda_of(args[1]) if _tagged(args[1]) else CPU
    if "device" in kwargs:
        return _device_of(kwargs["device"])
    if func is torch.Tensor.to:
        for a in args[1:]:
            if _is_device(a):
                return _device_of(a)
            if isinstance(a, torch.Tensor):
                return _cuda_of(a) if _tagged(a) else CPU
    return None


def _run(func, args, kwargs):
    with torch._C.DisableTorchFunctionSubclass():
        return func(*args, **kwargs)


class FakeCudaMode(TorchFunctionMode):
    """See the module docs."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func == torch.Tensor.device.__get__:
            return _cuda_of(args[0]) if _tagged(args[0]) else CPU
        if func == torch.Tensor.is_cuda.__get__:
            return _tagged(args[0])
        if func in _UNCHECKED:
            return _run(func, args, kwargs)
        if func == torch.Tensor.grad.__get__:  # autograd writes plain tensors: a cuda parameter's grad is cuda
            grad = _run(func, args, kwargs)
            return _as_device(grad, _cuda_of(args[0])) if _tagged(args[0]) else grad
        if func in (torch.Tensor.numpy, torch.Tensor.__array__) and _tagged(args[0]):
            raise TypeError(f"can't convert {_cuda_of(args[0])} device type tensor to numpy. Use Tensor.cpu() to "
                            "copy the tensor to host memory first.")
        if func in _MOVES:
            source = _cuda_of(args[0]) if _tagged(args[0]) else CPU
            target = _move_target(func, args, kwargs)
            if func in (torch.Tensor.cuda, torch.Tensor.cpu):
                func, args, kwargs = torch.Tensor.clone, args[:1], {}
            else:
                kwargs.pop("non_blocking", None)
                if "device" in kwargs:
                    kwargs["device"] = CPU
                args = tuple(CPU if i and _is_device(a) else a for i, a in enumerate(args))
                if func is torch.Tensor.to:
                    args = tuple(a.dtype if i and isinstance(a, torch.Tensor) else a for i, a in enumerate(args))
            out = _run(func, args, kwargs)
            return tree_map(lambda x: _as_device(x, target or source), out)
        factory_device = kwargs.get("device")
        if _is_device(factory_device) or isinstance(factory_device, int):
            kwargs["device"] = CPU
            return tree_map(lambda x: _as_device(x, _device_of(factory_device)), _run(func, args, kwargs))
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        if not any(_tagged(t) for t in tensors):
            return _run(func, args, kwargs)
        devices = {_cuda_of(t) for t in tensors if _tagged(t)}
        if len(devices) > 1:  # a per-rank bug: one rank's tensors on another rank's GPU
            found = ", ".join(sorted(map(str, devices)))
            raise DeviceMismatch(f"Expected all tensors to be on the same device, but found at least two devices, "
                                 f"{found}! ({getattr(func, '__name__', func)})")
        device = devices.pop()
        for t in tensors[:1] if func in _ALLOWS_CPU_INDEX else tensors:
            if not _tagged(t) and t.dim() > 0:
                raise DeviceMismatch(f"Expected all tensors to be on the same device, but found at least two "
                                     f"devices, {device} and cpu! ({getattr(func, '__name__', func)}: a cpu tensor "
                                     f"of shape {tuple(t.shape)})")
        out = _run(func, args, kwargs)
        return tree_map(lambda x: _as_device(x, device), out)


@contextlib.contextmanager
def fake_cuda() -> Iterator[torch.device]:
    """Within: ``cuda`` tensors are tagged CPU tensors (see the module docs). Yields the device."""
    overwrite = torch.__future__.get_overwrite_module_params_on_conversion()
    # module.to("cuda") must replace parameters (not only their .data) so that they keep the tag
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    try:  # cuDNN's kernels need a GPU: tagged tensors take the CPU kernels
        with torch.backends.cudnn.flags(enabled=False), FakeCudaMode():
            yield CUDA
    finally:
        torch.__future__.set_overwrite_module_params_on_conversion(overwrite)


def fake_cuda_strategy():
    """A Lightning strategy whose root device is ``cuda:0`` (use inside :func:`fake_cuda`): the
    model, the metrics and every batch go there, and Lightning's hooks run as on one GPU."""
    from lightning.pytorch.accelerators import CPUAccelerator
    from lightning.pytorch.strategies import SingleDeviceStrategy

    class TaggedCudaAccelerator(CPUAccelerator):
        def setup_device(self, device: torch.device) -> None:
            pass  # nothing to select: the device is a tag

    return SingleDeviceStrategy(device=CUDA, accelerator=TaggedCudaAccelerator())
