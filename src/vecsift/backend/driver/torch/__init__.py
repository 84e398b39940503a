"""The torch driver, as three parts: :mod:`.ops` (what torch and the CPU offer; int8 arithmetic),
:mod:`.attention` (the routes, chosen once) and :mod:`.driver` (the Driver primitives over them)."""

from vecsift.backend.driver.torch.driver import TorchDriver

__all__ = ["TorchDriver"]
