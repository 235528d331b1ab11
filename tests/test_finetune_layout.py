"""train_plain trains in channels_last for speed: the same training as the default layout up to float
rounding, and the network comes back in the default layout (export and state dicts unchanged)."""
import torch

from helpers import write_bar_dataset
from widthnas.models.net import build_network
from widthnas.nas.data import load_dataset, split
from widthnas.nas.finetune import train_plain


def _train_twice(tiny, data, epochs: int, seed: int, option: str, values):
    """The widest tiny network trained by train_plain from the same start on the images in `data`, once
    per value of its keyword `option`: the networks and their histories."""
    sp = split(load_dataset("npz", str(data)), 0.1, 0)
    nets, hists = [], []
    for v in values:
        torch.manual_seed(0)
        net = build_network(tiny, tiny.max_widths)
        hists.append(train_plain(net, sp, epochs, lr=0.05, seed=seed, log=lambda *_: None, device="cpu", **{option: v}))
        nets.append(net)
    return nets, hists


def test_channels_last_trains_the_same_network(tmp_path, tiny):
    data = write_bar_dataset(tmp_path / "data.npz", 256, 64, seed=3)
    nets, hists = _train_twice(tiny, data, 2, 1, "channels_last", (False, True))
    a, b = (dict(n.state_dict()) for n in nets)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), rtol=1e-3, atol=1e-4), k
    assert abs(hists[0][-1]["train_loss"] - hists[1][-1]["train_loss"]) < 1e-3
    for p in nets[1].parameters():  # handed back in the default layout
        assert p.is_contiguous()
    x = torch.randn(4, *tiny.input_shape)
    nets[0].eval(), nets[1].eval()
    assert torch.allclose(nets[0](x), nets[1](x), atol=1e-3)


def test_validating_only_the_last_epoch_changes_no_weight(tmp_path, tiny):
    """Retraining skips the per-epoch validation for speed: the weights and the final validation
    accuracy must be exactly those of the run that validates after every epoch."""
    data = write_bar_dataset(tmp_path / "data.npz", 256, 64, seed=4)
    nets, hists = _train_twice(tiny, data, 3, 2, "validate_each_epoch", (True, False))
    for k, v in nets[0].state_dict().items():
        assert torch.equal(v, nets[1].state_dict()[k]), k
    assert [h["val_acc"] for h in hists[1]][:2] == [None, None]
    assert hists[1][-1]["val_acc"] == hists[0][-1]["val_acc"] and hists[0][0]["val_acc"] is not None


def test_accuracy_does_not_depend_on_the_batch(tiny):
    from widthnas.nas.evaluate import accuracy

    torch.manual_seed(0)
    net = build_network(tiny, tiny.max_widths)
    x = torch.randint(0, 256, (300, *tiny.input_shape), dtype=torch.uint8)
    y = torch.randint(0, tiny.num_classes, (300,))
    mean, std = torch.full((tiny.input_shape[0],), 0.4), torch.full((tiny.input_shape[0],), 0.2)
    a = accuracy(net, x, y, mean, std, batch=512)
    b = accuracy(net, x, y, mean, std, batch=7)
    assert a[0] == b[0] and abs(a[1] - b[1]) < 1e-5


def test_the_progress_bar_changes_no_weight_and_counts_every_step(tmp_path, tiny, monkeypatch):
    import tqdm

    bars = []

    class Recorder(tqdm.tqdm):  # the real bar, remembering how far it got
        def close(self):
            if not self.disable:  # progress=False makes a disabled bar
                bars.append((self.desc, self.n, self.total))
            super().close()

    monkeypatch.setattr(tqdm, "tqdm", Recorder)
    data = write_bar_dataset(tmp_path / "data.npz", 256, 64, seed=3)
    nets, _ = _train_twice(tiny, data, 2, 1, "progress", (False, True))
    for k, v in nets[0].state_dict().items():
        assert torch.equal(v, nets[1].state_dict()[k]), k
    steps = 2 * (len(split(load_dataset("npz", str(data)), 0.1, 0).train[1]) // 128)
    shown = [b for b in bars if b[0].startswith("finetune")]
    assert len(shown) == 1 and shown[0][1:] == (steps, steps) and steps > 0  # every step of both epochs


def test_a_killed_training_resumes_from_its_checkpoint_to_the_same_weights(tmp_path, tiny):
    """train_plain(checkpoint=...) (the compress benchmark's 64-minute base model): stopped after its first
    epoch, then called again, it ends bit for bit where an uninterrupted training ends; a checkpoint of
    another number of epochs is refused."""
    import pytest

    sp = split(load_dataset("npz", str(write_bar_dataset(tmp_path / "data.npz", 256, 64, seed=3))), 0.1, 0)

    def fresh():
        torch.manual_seed(0)
        return build_network(tiny, tiny.max_widths)

    whole = fresh()
    h_whole = train_plain(whole, sp, 3, seed=2, log=lambda *_: None, device="cpu", checkpoint=tmp_path / "w.ckpt")

    def stop(msg):  # killed once epoch 2 has trained, before its checkpoint: epoch 1's is on disk
        if "epoch 2/3" in msg:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_plain(fresh(), sp, 3, seed=2, log=stop, device="cpu", checkpoint=tmp_path / "k.ckpt")
    assert torch.load(tmp_path / "k.ckpt", weights_only=True)["epoch"] == 1
    said, resumed = [], build_network(tiny, tiny.max_widths)  # other initial weights: the checkpoint's count
    h = train_plain(resumed, sp, 3, seed=2, log=said.append, device="cpu", checkpoint=tmp_path / "k.ckpt")
    assert any("resumed after epoch 1/3" in m for m in said) and [r["epoch"] for r in h] == [1, 2, 3]
    for k, v in whole.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert [r["train_loss"] for r in h] == [r["train_loss"] for r in h_whole]
    with pytest.raises(ValueError, match="not a checkpoint of this 4-epoch training"):
        train_plain(fresh(), sp, 4, seed=2, log=lambda *_: None, device="cpu", checkpoint=tmp_path / "k.ckpt")
