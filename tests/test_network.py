"""Child networks built from architecture strings."""

import pytest
import torch

from eas import TABLE1, Architecture, build_network, count_flops, densenet_bc, infer_shapes
from eas.shapes import channel_layouts

FASHION = (
    "C(16,3,1), P(2,2,MAX), C(32,3,1), P(2,2,MAX), C(64,3,1), P(2,2,MAX), "
    "C(128,3,1), P(3,3,AVG), FC(256), SM(10)"
)


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        (TABLE1, (3, 32, 32)),
        (FASHION, (1, 28, 28)),
        ("C(16,3,1), C(32,5,2), FC(64), SM(7)", (1, 28, 28)),
        ("C(16,3,1), C(16,3,1), C(16,3,1), S(0,2,ADD), S(1,2,CAT), P(2,2,MAX), FC(64), SM(10)",
         (3, 32, 32)),
        (str(densenet_bc(16, 12)), (3, 32, 32)),
    ],
)
def test_output_shapes(text, shape):
    net = build_network(text, shape, seed=0)
    y = net(torch.randn(4, *shape))
    classes = Architecture.parse(text).num_classes
    assert y.shape == (4, classes)
    assert torch.isfinite(y).all()
    assert str(net.arch) == text


def test_modules_follow_the_paper_layer_recipe():
    net = build_network(TABLE1, (3, 32, 32))
    conv = net.layers[0]
    assert isinstance(conv.conv, torch.nn.Conv2d) and conv.conv.out_channels == 16
    assert isinstance(conv.bn, torch.nn.BatchNorm2d)
    fc = net.layers[8]
    assert fc.fc.in_features == 128 and isinstance(fc.bn, torch.nn.BatchNorm1d)
    assert net.layers[9].fc.out_features == 10


def test_fc_after_spatial_input_flattens_channel_major():
    net = build_network("C(4,3,1), P(2,2,MAX), FC(8), SM(2)", (1, 8, 8))
    assert net.layers[2].fc.in_features == 4 * 4 * 4


def test_too_many_poolings_fail_at_build_time_with_a_reason():
    with pytest.raises(ValueError, match=r"layer 7 P\(4,4,AVG\).*larger than its 3x3 input"):
        build_network(TABLE1, (1, 28, 28))


def test_skip_between_mismatched_shapes_is_rejected():
    with pytest.raises(ValueError, match="ADD skip needs equal channel counts"):
        build_network("C(16,3,1), C(32,3,1), S(0,1,ADD), SM(10)", (1, 8, 8))
    with pytest.raises(ValueError, match="equal spatial sizes"):
        build_network("C(16,3,1), C(16,3,2), S(0,1,CAT), SM(10)", (1, 8, 8))


def test_dropout_is_optional_and_skips_the_first_conv():
    net = build_network("C(16,3,1), C(16,3,1), SM(10)", (1, 8, 8), dropout=0.2)
    assert isinstance(net.layers[0].drop, torch.nn.Identity)
    assert isinstance(net.layers[1].drop, torch.nn.Dropout)


def test_seeded_build_is_reproducible_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a = build_network(FASHION, (1, 28, 28), seed=3)
    b = build_network(FASHION, (1, 28, 28), seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_channel_layouts_track_owners_through_pooling_cat_and_dense():
    arch = "C(4,3,1), C(4,3,1), S(0,1,CAT), P(2,2,MAX), FC(8), SM(2)"
    ins, outs = channel_layouts(arch, (1, 8, 8))
    assert outs[1] == [(1, c) for c in range(4)] + [(0, c) for c in range(4)]
    assert outs[2] == outs[1] and ins[3] == outs[1]  # pooling passes channels through
    ins, outs = channel_layouts("C(4,3,1), DL(2,3,0), DL(2,3,0), C(3,1,1), SM(2)", (1, 8, 8))
    assert ins[2] == [(0, c) for c in range(4)] + [(1, 0), (1, 1)]
    assert len(ins[3]) == 8


def test_flops_and_shapes():
    shapes = infer_shapes(FASHION, (1, 28, 28))
    assert [s.out_hw for s in shapes[:8]] == [
        (28, 28), (14, 14), (14, 14), (7, 7), (7, 7), (3, 3), (3, 3), (1, 1)]
    expected = (1 * 16 * 9 * 28 * 28 + 16 * 32 * 9 * 14 * 14 + 32 * 64 * 9 * 7 * 7
                + 64 * 128 * 9 * 3 * 3 + 128 * 256 + 256 * 10)
    assert count_flops(FASHION, (1, 28, 28)) == expected


def test_add_skip_reowns_the_summed_channels():
    arch = "C(4,3,1), C(4,3,1), S(0,1,ADD), C(2,3,1), S(1,2,CAT), SM(2)"
    ins, outs = channel_layouts(arch, (1, 8, 8))
    assert outs[1] == [(1, c) for c in range(4)]  # sums now, owned by the ADD layer
    assert outs[2] == [(2, 0), (2, 1)] + [(1, c) for c in range(4)]
    assert channel_layouts(arch, 1) == (ins, outs)
