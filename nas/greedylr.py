"""GreedyLR: a learning rate that follows the loss instead of a fixed curve.

The rate rises after a streak of improving loss readings (an epoch's validation loss; with `every` = N,
the mean training loss of the last N steps) and falls after a streak of worsening ones; a change under
`threshold` neither extends nor breaks a streak. GreedyOptions holds the rules.

The class follows torch.optim.lr_scheduler.ReduceLROnPlateau: `step(loss)`, `get_last_lr()`,
`state_dict()` / `load_state_dict()` (the optimizer is not part of the state), so a resumed run
continues bit-identically.
"""
from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, fields

import torch


@dataclass
class GreedyOptions:
    factor: float = 0.5  # multiply by this on a fall, divide on a rise; in (0, 1)
    patience: int = 0  # consecutive improving (or worsening) readings tolerated before acting
    window: int = 1  # readings in the rolling mean the decisions use (1: no smoothing)
    threshold: float = 0.01  # relative change below which a reading counts as no change
    cooldown: int = 0  # after a fall, keep falling for this many readings
    warmup: int = 0  # after a rise, keep rising for this many readings
    min_lr: float | None = None  # lower bound, absolute; None: 1/1000 of the starting rate
    max_lr: float | None = None  # upper bound, absolute; None: twice the starting rate
    every: int = 0  # 0: one reading per epoch (validation loss); N: every N steps (mean training loss)

    def check(self) -> "GreedyOptions":
        """Refuse settings that cannot work, naming the setting and what to use instead."""
        if not 0 < self.factor < 1:
            raise ValueError(f"greedy factor {self.factor}: use a value between 0 and 1 (e.g. 0.5; "
                             "the rate is multiplied by it on a fall and divided by it on a rise)")
        for name in ("patience", "cooldown", "warmup", "every"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 0:
                raise ValueError(f"greedy {name} {getattr(self, name)}: use a whole number >= 0")
        if int(self.window) != self.window or self.window < 1:
            raise ValueError(f"greedy window {self.window}: use a whole number >= 1 (1: no smoothing)")
        if self.threshold < 0:
            raise ValueError(f"greedy threshold {self.threshold}: use a relative change >= 0 (e.g. 0.01)")
        lo = 0 if self.min_lr is None else self.min_lr
        hi = float("inf") if self.max_lr is None else self.max_lr
        if not 0 <= lo <= hi:
            raise ValueError(f"greedy bounds min_lr {self.min_lr}, max_lr {self.max_lr}: need 0 <= min_lr <= max_lr")
        return self

    @classmethod
    def parse(cls, text: str | None) -> "GreedyOptions":
        """'factor=0.5,patience=1,min_lr=1e-4' (the --greedy option); empty: the defaults."""
        opts = cls()
        types = {f.name: f.type for f in fields(cls)}
        for item in filter(None, (t.strip() for t in (text or "").split(","))):
            key, sep, val = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in types:
                raise ValueError(f"--greedy {item!r}: expected key=value with key one of {sorted(types)}")
            try:
                whole = types[key] in ("int", int)
                setattr(opts, key, int(val) if whole else float(val))
            except ValueError:
                raise ValueError(f"--greedy {key}={val!r}: expected {'a whole number' if whole else 'a number'}") from None
        return opts.check()


class GreedyLR:
    """Adapts every parameter group's rate from successive loss readings (see the module doc)."""

    def __init__(self, optimizer: torch.optim.Optimizer, options: GreedyOptions | None = None):
        self.optimizer = optimizer
        opts = GreedyOptions(**asdict(options or GreedyOptions())).check()
        start = max(float(g["lr"]) for g in optimizer.param_groups)
        opts.min_lr = start * 1e-3 if opts.min_lr is None else opts.min_lr
        opts.max_lr = start * 2 if opts.max_lr is None else opts.max_lr
        self.opts = opts.check()
        self.lrs = [min(max(float(g["lr"]), self.opts.min_lr), self.opts.max_lr) for g in optimizer.param_groups]
        self.history: deque[float] = deque(maxlen=self.opts.window)  # raw readings in the window
        self.prev: float | None = None  # last smoothed reading
        self.good = self.bad = 0  # current streak lengths
        self.rising = self.falling = 0  # readings left in a warm-up (rising) or cooldown (falling) phase
        self.last_epoch = 0
        self.last_action = "none"  # rise | fall | hold (for logs and tests)
        self.pending: list[float] = []  # training losses since the last reading (every > 0)
        self.set_scale()

    # ---- the rules -----------------------------------------------------------------------
    def step(self, loss: float) -> list[float]:
        loss = float(loss)
        if loss != loss:  # NaN: a diverged step is the clearest "worse"
            loss = float("inf")
        self.history.append(loss)
        smooth = sum(self.history) / len(self.history)
        self.last_epoch += 1
        action = "hold"
        if self.rising:
            self.rising -= 1
            action = "rise"
        elif self.falling:
            self.falling -= 1
            action = "fall"
        elif self.prev is not None:
            change = self._relative_change(self.prev, smooth)
            if change < -self.opts.threshold:
                self.good, self.bad = self.good + 1, 0
            elif change > self.opts.threshold:
                self.bad, self.good = self.bad + 1, 0
            if self.good > self.opts.patience:
                action, self.rising = "rise", self.opts.warmup
            elif self.bad > self.opts.patience:
                action, self.falling = "fall", self.opts.cooldown
        if action != "hold":
            self.good = self.bad = 0
        if action == "rise":
            self.lrs = [min(lr / self.opts.factor, self.opts.max_lr) for lr in self.lrs]
        elif action == "fall":
            self.lrs = [max(lr * self.opts.factor, self.opts.min_lr) for lr in self.lrs]
        self.prev, self.last_action = smooth, action
        self.set_scale()
        return self.get_last_lr()

    @staticmethod
    def _relative_change(prev: float, now: float) -> float:
        if prev == now:
            return 0.0
        if prev in (float("inf"), float("-inf")) or now in (float("inf"), float("-inf")):
            return float("inf") if now > prev else float("-inf")
        return (now - prev) / max(abs(prev), 1e-12)

    # ---- the training loop's two hooks ---------------------------------------------------
    def after_batch(self, loss: float) -> None:
        """With `every` = N: one reading, the mean training loss, every N steps."""
        if self.opts.every:
            self.pending.append(float(loss))
            if len(self.pending) == self.opts.every:
                self.step(sum(self.pending) / len(self.pending))
                self.pending = []

    def after_epoch(self, val_loss: float) -> bool:
        """With `every` = 0: the epoch's validation loss is the reading. True when it stepped."""
        if not self.opts.every:
            self.step(val_loss)
        return not self.opts.every

    # ---- the optimizer -------------------------------------------------------------------
    def set_scale(self, scale: float = 1.0) -> None:
        """Write the current rates times `scale` (a linear warm-up ramp) into the optimizer."""
        for g, lr in zip(self.optimizer.param_groups, self.lrs):
            g["lr"] = lr * scale

    def get_last_lr(self) -> list[float]:
        return list(self.lrs)

    # ---- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"options": asdict(self.opts), "lrs": list(self.lrs), "history": list(self.history),
                "prev": self.prev, "good": self.good, "bad": self.bad, "rising": self.rising,
                "falling": self.falling, "last_epoch": self.last_epoch, "last_action": self.last_action,
                "pending": list(self.pending)}

    def load_state_dict(self, state: dict) -> None:
        self.opts = GreedyOptions(**state["options"]).check()
        self.lrs = [float(v) for v in state["lrs"]]
        self.history = deque((float(v) for v in state["history"]), maxlen=self.opts.window)
        self.prev, self.last_action = state["prev"], state["last_action"]
        for k in ("good", "bad", "rising", "falling", "last_epoch"):  # counters
            setattr(self, k, int(state[k]))
        self.pending = [float(v) for v in state.get("pending", [])]
        self.set_scale()
