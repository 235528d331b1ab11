"""train_plain trains in channels_last for speed: the same training as the default layout up to float
rounding, and the network comes back in the default layout (export and state dicts unchanged)."""
import torch

from widthnas.models.mobilenet import build_network
from widthnas.nas.data import load_dataset, split
from widthnas.nas.finetune import train_plain


def test_channels_last_trains_the_same_network(tmp_path, tiny, write_bar_dataset):
    write_bar_dataset(tmp_path / "data.npz", 256, 64, seed=3)
    sp = split(load_dataset("npz", str(tmp_path / "data.npz")), 0.1, 0)
    nets, hists = [], []
    for cl in (False, True):
        torch.manual_seed(0)
        net = build_network(tiny, tiny.max_widths)
        hists.append(train_plain(net, sp, 2, lr=0.05, seed=1, log=lambda *_: None, device="cpu", channels_last=cl))
        nets.append(net)
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
