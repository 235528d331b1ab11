"""Hidden layers on the pooled features (issue 32): an MLP head (Linear, ReLU, Linear) and MobileNet-v3's
head (a 1x1 conv with a bias and hardswish on the pooled map, then a 1x1 conv classifier). Each hidden
layer is a 1x1 conv on a 1x1 map in the space, its width a channel group of its own."""
import pytest
import torch

import trace_models as tm
from helpers import check_every_form, lively_bn
from widthnas.models.trace import trace_model



@pytest.mark.parametrize("model, hidden", [(tm.MLPHead, "head.1"), (tm.ConvHead, "hidden")])
def test_a_hidden_head_layer_traces_is_searched_and_every_form_computes_it(model, hidden, tmp_path):
    space, widths = check_every_form(lively_bn(model()), (1, 16, 16), tmp_path)
    g = space.graph
    op = next(o for o in g.ops if space.source.module_of.get(o.name) == hidden)
    assert op.kind == "conv" and op.kernel == 1 and op.bias and g.sizes[op.inputs[0]] == (1, 1)
    assert g.group_of[op.name] in [s.name for s in space.free_groups]  # its width is searched
    assert dict(zip([s.name for s in space.free_groups], widths))[g.group_of[op.name]] < op.out  # and narrower here
    assert g.ops[-1].kind == "linear"  # the classifier stays the one linear op


def test_the_users_weights_fill_a_hidden_linear_as_a_1x1_conv():
    from widthnas.models.trace_weights import user_network

    torch.manual_seed(0)
    model = tm.MLPHead().eval()
    space = trace_model(model, (1, 16, 16))
    net = user_network(space, model.state_dict()).eval()
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), rtol=1e-5, atol=1e-5)
    # by BN |gamma| alone ("bn"; no BN here: the conv's own L1), the channels kept at a narrower hidden width
    # are the rows of largest L1 norm, in their order
    hidden = next(o for o in space.graph.ops if space.source.module_of.get(o.name) == "head.1")
    group = space.graph.group_of[hidden.name]
    k = min(c for c in space.choices[[s.name for s in space.free_groups].index(group)])
    widths = {s.name: (k if s.name == group else s.base) for s in space.free_groups}
    small = user_network(space, model.state_dict(), widths, criterion="bn")
    w = model.head[1].weight.detach()
    keep = torch.sort(torch.sort(-w.abs().sum(1), stable=True).indices[:k]).values
    from widthnas.models.net import module_key

    torch.testing.assert_close(small.layers[module_key(hidden)].weight[:, :, 0, 0], w[keep])
    torch.testing.assert_close(small.layers[module_key(space.graph.ops[-1])].weight,
                               model.head[4].weight.detach()[:, keep])


def test_an_mlp_head_on_a_map_not_yet_pooled_reads_it_as_a_conv_over_the_map():
    """Refused until VGG's head was supported (tests/test_vgg_head.py): the first Linear is an 8x8 conv."""
    from torch import nn

    space = trace_model(nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.Flatten(), nn.Linear(16 * 64, 32), nn.ReLU(), nn.Linear(32, 10)), (1, 8, 8))
    first = next(o for o in space.graph.ops if o.kind == "conv" and o.kernel == 8)
    assert first.padding == 0 and first.out == 32 and space.graph.sizes[first.name] == (1, 1)
