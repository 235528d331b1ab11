"""The MobileNet-v1 spaces (graph families since 0.2) and the width helpers every space shares."""
import json

import pytest

from widthnas.models import GraphSpace, WidthError, get_space, mobilenet_v1, mobilenet_v1_small, width_choices


def test_width_choices_round_to_eight_and_deduplicate():
    c = width_choices(32)
    assert c == (8, 16, 24, 32, 40, 48)
    assert all(x % 8 == 0 for x in width_choices(1024)) and len(width_choices(1024)) == 14
    assert min(width_choices(1024)) == 208 and max(width_choices(1024)) == 1536  # 0.2x and 1.5x


def _stride2_convs(space):
    return [op.name for op in space.graph.ops if op.kind == "conv" and op.stride == 2]


def test_mobilenet_v1_matches_the_published_network():
    s = mobilenet_v1()
    assert [g.name for g in s.free_groups] == ["stem"] + [f"block{i}" for i in range(1, 14)]
    assert s.input_shape == (3, 224, 224) and s.num_classes == 1000
    assert s.base_widths == [32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]  # Table 1
    # MobileNet-v1 1.0 is 569 M multiply-adds (Howard et al. 2017, Table 1 row 1)
    assert abs(s.macs(s.base_widths) / 1e6 - 569) < 1.5
    assert s.graph.sizes["block13"] == (7, 7)
    assert _stride2_convs(s) == ["stem", "block2.dw", "block4.dw", "block6.dw", "block12.dw"]
    for i in range(1, 14):  # a depthwise conv keeps its input's group, the pointwise one starts the block's
        assert s.graph.group_of[f"block{i}.dw"] == s.graph.group_of[s.graph.by_name[f"block{i}.dw"].inputs[0]]
        assert s.graph.group_of[f"block{i}"] == f"block{i}"


def test_small_space_has_fewer_stride_two_layers():
    s, big = mobilenet_v1_small(), mobilenet_v1()
    assert _stride2_convs(s) == ["block2.dw", "block4.dw", "block12.dw"]
    assert len(_stride2_convs(s)) < len(_stride2_convs(big))
    assert s.num_classes == 10 and s.input_shape == (1, 28, 28) and s.graph.sizes["block13"] == (4, 4)
    assert s.base_widths == [c // 2 for c in big.base_widths]


def test_json_round_trip_and_fingerprint(tmp_path):
    s = mobilenet_v1_small()
    s2 = GraphSpace.from_dict(json.loads(json.dumps(s.to_dict())))
    assert s2 == s and s2.fingerprint == s.fingerprint
    s.save(tmp_path / "s.json")
    assert get_space(str(tmp_path / "s.json")).fingerprint == s.fingerprint
    assert s.with_input((3, 32, 32)).fingerprint != s.fingerprint
    assert mobilenet_v1().fingerprint != s.fingerprint


def test_validate_names_the_bad_group():
    s = mobilenet_v1_small()
    w = s.base_widths
    w[3] = 33
    with pytest.raises(WidthError, match=r"group block3: width 33 is not a choice; choices are \[16, 24"):
        s.validate(w)
    with pytest.raises(WidthError, match="13 widths given; space 'mobilenet_v1_small' has 14 free groups"):
        s.validate(w[:-1])


def test_parse_widths_and_uniform():
    s = mobilenet_v1_small()
    assert s.parse_widths("x1.0") == s.base_widths
    assert s.parse_widths(",".join(map(str, s.max_widths))) == s.max_widths
    assert s.parse_widths(json.dumps(dict(zip([g.name for g in s.free_groups], s.min_widths)))) == s.min_widths
    assert s.uniform(1.5) == s.max_widths and s.uniform(0.2) == s.min_widths


def test_unknown_space_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown search space 'vgg'; shipped: \['mobilenet_v1'"):
        get_space("vgg")


@pytest.mark.parametrize("text, msg", [("x abc", "uniform multiplier"), ("x-1", "between x"), ("x100", "between x"),
                                       ("xnan", "between x"), ("8,sixteen", "channels")])
def test_bad_widths_are_named_not_clamped(small, text, msg):
    with pytest.raises(WidthError, match=msg):
        small.parse_widths(text)
    assert small.parse_widths("x1.5") == small.max_widths and small.parse_widths("x0.2") == small.min_widths


def test_widths_that_are_not_whole_numbers_are_refused(small):
    w = small.base_widths
    w[0] += 0.5
    with pytest.raises(WidthError, match="whole"):
        small.parse_widths(json.dumps(w))


def test_multiplier_widths_round_to_8_and_dense_space_accepts_them():
    s = get_space("mobilenet_v1_small")
    d = s.with_dense_choices(8)
    assert d.fingerprint != s.fingerprint  # another space: profiles of s do not silently apply
    for g, dg in zip(s.free_groups, d.free_groups):
        assert set(g.choices) <= set(dg.choices) and dg.choices[-1] == g.choices[-1]
        assert dg.choices == tuple(range(8, g.choices[-1] + 1, 8))  # every multiple of 8 up to the widest
    prev = None
    for m in (0.05, 0.25, 0.3, 0.37, 0.5, 1.0, 3.0):
        w = s.multiplier_widths(m)
        for x, g in zip(w, s.free_groups):  # nearest multiple of 8 to m x base, clamped to [8, widest]
            want = min(g.choices[-1], max(8, 8 * round(m * g.base / 8)))
            assert x == want or abs(m * g.base / 8 % 1 - 0.5) < 1e-9
        assert d.validate(w) == w
        if prev is not None:
            assert all(a <= b for a, b in zip(prev, w))  # monotone in m: latency bisection relies on it
        prev = w
    assert s.multiplier_widths(1.0) == s.base_widths
    with pytest.raises(ValueError, match="positive"):
        s.multiplier_widths(0)
    with pytest.raises(ValueError, match="step"):
        s.with_dense_choices(0)
