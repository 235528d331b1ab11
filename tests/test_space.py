import json

import pytest

from widthnas.models.space import SearchSpace, WidthError, get_space, mobilenet_v1, mobilenet_v1_small, width_choices


def test_width_choices_round_to_eight_and_deduplicate():
    c = width_choices(32)
    assert c == (8, 16, 24, 32, 40, 48)
    assert all(x % 8 == 0 for x in width_choices(1024)) and len(width_choices(1024)) == 14
    assert min(width_choices(1024)) == 208 and max(width_choices(1024)) == 1536  # 0.2x and 1.5x


def test_mobilenet_v1_matches_the_published_network():
    s = mobilenet_v1()
    assert s.num_layers == 14 and s.input_shape == (3, 224, 224) and s.num_classes == 1000
    # MobileNet-v1 1.0 is 569 M multiply-adds (Howard et al. 2017, Table 1 row 1)
    assert abs(s.macs(s.base_widths) / 1e6 - 569) < 1.5
    assert s.spatial_sizes()[-1] == 7


def test_small_space_has_fewer_stride_two_layers():
    s, big = mobilenet_v1_small(), mobilenet_v1()
    assert sum(l.stride == 2 for l in s.layers) < sum(l.stride == 2 for l in big.layers)
    assert s.num_classes == 10 and s.input_shape[1] == 28


def test_json_round_trip_and_fingerprint():
    s = mobilenet_v1_small()
    s2 = SearchSpace.from_dict(json.loads(json.dumps(s.to_dict())))
    assert s2 == s and s2.fingerprint == s.fingerprint
    assert s.with_input((3, 32, 32)).fingerprint != s.fingerprint
    assert mobilenet_v1().fingerprint != s.fingerprint


def test_validate_names_the_bad_layer():
    s = mobilenet_v1_small()
    w = s.base_widths
    w[3] = 33
    with pytest.raises(WidthError, match="layer 3 .*33.*choices"):
        s.validate(w)
    with pytest.raises(WidthError, match="13 widths given"):
        s.validate(w[:-1])


def test_parse_widths_and_uniform():
    s = mobilenet_v1_small()
    assert s.parse_widths("x1.0") == s.base_widths
    assert s.parse_widths(",".join(map(str, s.max_widths))) == s.max_widths
    assert s.uniform(1.5) == s.max_widths


def test_unknown_space_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown search space"):
        get_space("resnet")


@pytest.mark.parametrize("text, msg", [("x abc", "uniform multiplier"), ("x-1", "between x"), ("x100", "between x"),
                                       ("xnan", "between x"), ("8,sixteen", "channels"), ("[8, 1.5]", "whole")])
def test_bad_widths_are_named_not_clamped(small, text, msg):
    from widthnas.models.space import WidthError

    with pytest.raises(WidthError, match=msg):
        small.parse_widths(text)
    assert small.parse_widths("x1.5") == small.max_widths and small.parse_widths("x0.2") == small.min_widths


def test_multiplier_widths_round_to_8_and_dense_space_accepts_them():
    from widthnas.models.space import get_space

    s = get_space("mobilenet_v1_small")
    d = s.with_dense_choices(8)
    assert d.fingerprint != s.fingerprint  # another space: profiles of s do not silently apply
    for i, l in enumerate(s.layers):
        assert set(l.choices) <= set(d.layers[i].choices) and d.layers[i].choices[-1] == l.choices[-1]
        assert all(c % 8 == 0 for c in d.layers[i].choices)
    prev = None
    for m in (0.05, 0.25, 0.3, 0.37, 0.5, 1.0, 3.0):
        w = s.multiplier_widths(m)
        for x, l in zip(w, s.layers):  # nearest multiple of 8 to m x base, clamped to [8, widest]
            want = min(l.choices[-1], max(8, 8 * round(m * l.base / 8)))
            assert x == want or abs(m * l.base / 8 % 1 - 0.5) < 1e-9
        assert d.validate(w) == w
        if prev is not None:
            assert all(a <= b for a, b in zip(prev, w))  # monotone in m: latency bisection relies on it
        prev = w
    with pytest.raises(ValueError, match="positive"):
        s.multiplier_widths(0)
    with pytest.raises(ValueError, match="step"):
        s.with_dense_choices(0)
