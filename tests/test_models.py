import torch

from widthnas.models.mobilenet import SlimmableMobileNet, build_network


def test_plain_network_shapes(tiny):
    net = build_network(tiny, [8, 24, 16, 48]).eval()
    assert net(torch.randn(2, *tiny.input_shape)).shape == (2, tiny.num_classes)
    assert net.features[2][1][0].weight.shape == (16, 24, 1, 1)  # pointwise c_out x c_in


def test_materialize_equals_supernet_slice(small):
    torch.manual_seed(0)
    sup = SlimmableMobileNet(small)
    sup.train()
    for _ in range(3):  # give BN non-trivial running statistics
        sup(torch.randn(8, *small.input_shape), small.max_widths)
    sup.eval()
    x = torch.randn(4, *small.input_shape)
    for widths in (small.min_widths, small.uniform(0.7), small.max_widths):
        net = sup.materialize(widths).eval()
        assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in sup.parameters()) or widths == small.max_widths
        torch.testing.assert_close(net(x), sup(x, widths), rtol=1e-4, atol=1e-5)


def test_narrow_pass_uses_smaller_convolutions(small):
    sup = SlimmableMobileNet(small).eval()
    seen = []
    hook = torch.nn.functional.conv2d
    try:
        torch.nn.functional.conv2d = lambda x, w, *a, **k: (seen.append(w.shape), hook(x, w, *a, **k))[1]
        sup(torch.randn(1, *small.input_shape), small.min_widths)
    finally:
        torch.nn.functional.conv2d = hook
    assert seen[0][0] == small.min_widths[0]  # stem has min channels, not masked max channels
