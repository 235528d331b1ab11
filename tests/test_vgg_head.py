"""VGG's head: a feature map flattened without pooling into hidden Linear layers. The first Linear is an H x H
conv without padding on the H x H map (its output a 1x1 map), the next ones 1x1 convs, each width a group of its
own; the user's weights fill them reshaped. Checked in every form of the space at a narrower width."""
import pytest
import torch

import trace_models as tm
from helpers import check_every_form, lively_bn
from widthnas.models.trace import TraceError, trace_model
from widthnas.models.trace_weights import WeightsError, check_state



def test_a_vgg_head_traces_as_convs_and_every_form_computes_it(tmp_path):
    space, widths = check_every_form(lively_bn(tm.SmallVGG()), (1, 16, 16), tmp_path)
    src, g = space.source.module_of, space.graph
    first = next(o for o in g.ops if src.get(o.name) == "classifier.0")
    assert (first.kind, first.kernel, first.padding, first.out, first.bias) == ("conv", 4, 0, 64, True)
    assert g.sizes[first.inputs[0]] == (4, 4) and g.sizes[first.name] == (1, 1)
    hidden = next(o for o in g.ops if src.get(o.name) == "classifier.3")
    assert (hidden.kind, hidden.kernel) == ("conv", 1) and g.ops[-1].kind == "linear"
    free = [s.name for s in space.free_groups]
    assert g.group_of[first.name] in free and g.group_of[hidden.name] in free
    chosen = dict(zip(free, widths))
    assert chosen[g.group_of[first.name]] < 64  # the hidden widths are searched, and narrower here


def test_a_classifier_on_an_unpooled_map_is_refused_with_what_to_do():
    with pytest.raises(TraceError, match="classifier reads a flattened 4x4 feature map") as e:
        trace_model(tm.FlatClassifier(), (1, 16, 16))
    assert "AdaptiveAvgPool2d" in str(e.value)


def test_weights_of_another_map_size_are_refused_by_name():
    model = tm.SmallVGG()
    space = trace_model(model, (1, 16, 16))
    sd = dict(model.state_dict())
    sd["classifier.0.weight"] = torch.zeros(64, 32 * 3 * 3)  # a 3x3 map's head: the space needs 4x4
    with pytest.raises(WeightsError, match="classifier.0.weight"):
        check_state(space, sd)


@pytest.mark.slow  # 224 px, 4096-wide hidden layers: 34 s while fine-tunings ran, 3.6 GB
@pytest.mark.parametrize("factory", ["bn_vgg11", "vgg11"])  # with BN, and convs with biases and no BN
def test_pytorchcv_vgg11_computes_the_model_at_a_narrower_width(tmp_path, factory):
    pytest.importorskip("pytorchcv")
    import pytorchcv.models.vgg as vgg

    torch.manual_seed(0)
    space, widths = check_every_form(getattr(vgg, factory)().eval(), (3, 224, 224), tmp_path)
    assert sum(widths) < sum(space.base_widths)
    assert any(op.kind == "bn" for op in space.graph.ops) == (factory == "bn_vgg11")
