"""Architecture strings: parsing, printing, round trips, errors, blocks, tokens."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eas import TABLE1, Architecture, Conv, Pool, SearchSpace, Skip, Softmax, Tokenizer, densenet_bc
from eas.arch import resolve_start_arch
from eas.layers import FC, Dense

PAPER_TABLE1 = (
    "C(16,3,1), P(2,2,MAX), C(32,3,1), P(2,2,MAX), C(64,3,1), P(2,2,MAX), "
    "C(128,3,1), P(4,4,AVG), FC(256), SM(10)"
)


def test_table1_parses_exactly_as_printed():
    arch = Architecture.parse(PAPER_TABLE1)
    assert arch.layers == (
        Conv(16, 3, 1), Pool(2, 2, "MAX"), Conv(32, 3, 1), Pool(2, 2, "MAX"),
        Conv(64, 3, 1), Pool(2, 2, "MAX"), Conv(128, 3, 1), Pool(4, 4, "AVG"),
        FC(256), Softmax(10),
    )
    assert str(arch) == PAPER_TABLE1 == TABLE1
    assert arch.num_classes == 10


def test_whitespace_and_case_are_tolerated_but_canonical_form_is_fixed():
    arch = Architecture.parse(" c( 16 ,3,1 ),p(2,2,max),  fc(64) , sm(10)")
    assert str(arch) == "C(16,3,1), P(2,2,MAX), FC(64), SM(10)"


def test_blocks_are_runs_between_pooling_layers():
    arch = Architecture.parse(TABLE1)
    assert arch.blocks() == [[0], [2], [4], [6], [8]]
    arch = Architecture.parse("C(16,3,1), C(16,3,1), P(2,2,MAX), C(32,3,1), SM(10)")
    assert arch.blocks() == [[0, 1], [3]]


def test_densenet_bc_40_40_is_expressible():
    arch = densenet_bc(40, 40)
    assert arch.is_densenet
    blocks = arch.dense_blocks()
    assert [len(b) for b in blocks] == [6, 6, 6]
    assert all(arch.layers[i] == Dense(40, 3, 160) for b in blocks for i in b)
    # depth L counts conv and classifier layers: stem + 2 per bottleneck layer + transitions + SM
    convs = 1 + sum(2 for b in blocks for _ in b) + 2 + 1
    assert convs == 40
    assert Architecture.parse(str(arch)) == arch


def test_skip_connections_round_trip_and_sit_after_their_destination():
    text = "C(16,3,1), C(16,3,1), C(16,3,1), S(0,2,ADD), S(1,2,CAT), P(2,2,MAX), SM(10)"
    arch = Architecture.parse(text)
    assert arch.skips == (Skip(0, 2, "ADD"), Skip(1, 2, "CAT"))
    assert str(arch) == text
    with pytest.raises(ValueError, match=r"token 2 'S\(0,2,ADD\)'.*directly after layer 2"):
        Architecture.parse("C(16,3,1), C(16,3,1), S(0,2,ADD), C(16,3,1), SM(10)")


def test_insert_layer_shifts_skip_indices():
    arch = Architecture.parse("C(16,3,1), C(16,3,1), C(16,3,1), S(0,2,ADD), SM(10)")
    new = arch.insert_layer(1, Conv(16, 3, 1))
    assert new.skips == (Skip(0, 3, "ADD"),)
    assert str(new) == "C(16,3,1), C(16,3,1), C(16,3,1), C(16,3,1), S(0,3,ADD), SM(10)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("C(16,3)", r"token 0 'C\(16,3\)': expected 3 arguments"),
        ("C(16,3,1), X(3), SM(10)", r"token 1 'X\(3\)': unknown layer type 'X'"),
        ("C(16,3,1),, SM(10)", r"token 1 is empty"),
        ("C(16,3,1), P(2,2,MIN), SM(10)", r"token 1 'P\(2,2,MIN\)': pooling mode 'MIN'"),
        ("C(16,a,1), SM(10)", r"token 0 'C\(16,a,1\)': 'a' is not an integer"),
        ("C(0,3,1), SM(10)", r"token 0 'C\(0,3,1\)': filters must be >= 1"),
        ("C(16,3,1), P(2,2,MAX", r"token 1 'P\(2,2,MAX' is malformed"),
        ("FC(64), C(16,3,1), SM(10)", r"layer 1 C\(16,3,1\): convolution and pooling"),
        ("C(16,3,1), FC(64)", r"last layer must be SM"),
        ("SM(10), SM(10)", r"layer 0 SM\(10\): SM may only be the last layer"),
        ("", r"empty architecture string"),
        ("C(16,3,1), P(2,2,MAX), S(0,1,ADD), SM(10)", r"skips connect conv layers; layer 1"),
    ],
)
def test_malformed_strings_name_the_bad_token_and_position(text, expected):
    with pytest.raises(ValueError, match=expected):
        Architecture.parse(text)


conv = st.builds(Conv, st.integers(1, 512), st.sampled_from([1, 3, 5]), st.integers(1, 3))
pool = st.builds(Pool, st.integers(1, 4), st.integers(1, 4), st.sampled_from(["MAX", "AVG"]))
dense = st.builds(Dense, st.integers(1, 64), st.sampled_from([1, 3, 5]), st.integers(0, 256))


@st.composite
def architectures(draw):
    body = draw(st.lists(st.one_of(conv, pool, dense), max_size=12))
    fcs = draw(st.lists(st.builds(FC, st.integers(1, 1024)), max_size=3))
    layers = body + fcs + [Softmax(draw(st.integers(1, 100)))]
    arch = Architecture(tuple(layers))
    conv_idx = [i for i, layer in enumerate(layers) if isinstance(layer, Conv)]
    skips = set()
    for _ in range(draw(st.integers(0, 3))):
        if len(conv_idx) >= 2:
            i, j = sorted(draw(st.lists(st.sampled_from(conv_idx), min_size=2, max_size=2,
                                        unique=True)))
            skips.add((i, j))
    modes = [draw(st.sampled_from(["ADD", "CAT"])) for _ in skips]
    return Architecture(arch.layers, tuple(Skip(i, j, m) for (i, j), m in zip(sorted(skips), modes)))


@settings(max_examples=200, deadline=None)
@given(architectures())
def test_round_trip(arch):
    text = str(arch)
    again = Architecture.parse(text)
    assert again == arch
    assert str(again) == text


def test_tokenizer_maps_layers_to_ids_and_pads():
    tok = Tokenizer()
    ids = tok.encode(TABLE1)
    assert len(ids) == 9  # one per layer, the classifier excluded
    assert ids[1] == ids[3] == ids[5] == tok.index["P(MAX)"]
    assert ids[7] == tok.index["P(AVG)"]
    assert ids[0] == tok.index["C(16,3)"] and ids[8] == tok.index["FC(256)"]
    assert len(set(ids)) == 7 and tok.PAD not in ids
    padded = tok.encode(TABLE1, max_len=50)
    assert len(padded) == 50 and padded[9:] == [tok.PAD] * 41
    assert tok.encode("C(17,3,1), SM(10)") == [tok.UNK]  # 17 filters is outside the space
    with pytest.raises(ValueError, match="more than max_len=5"):
        tok.encode(TABLE1, max_len=5)


def test_search_space_is_configurable_and_validated():
    space = SearchSpace(filters=(8, 16), fc_units=(32,), kernel_sizes=(3,))
    tok = Tokenizer(space)
    assert tok.encode("C(8,3,1), C(16,3,1), FC(32), SM(2)")[:3] == [
        tok.index["C(8,3)"], tok.index["C(16,3)"], tok.index["FC(32)"]]
    assert space.next_width(Conv(8, 3, 1)) == 16
    assert space.next_width(Conv(16, 3, 1)) is None
    assert SearchSpace().next_width(FC(256)) == 384
    with pytest.raises(ValueError, match="SearchSpace.filters"):
        SearchSpace(filters=(32, 16))


def test_the_default_start_is_built_from_table1_for_the_input() -> None:
    assert str(resolve_start_arch("default", (3, 32, 32), 10)) == TABLE1
    fashion = resolve_start_arch(" Table1 ", (1, 28, 28), 100)
    assert str(fashion).endswith("C(128,3,1), P(3,3,AVG), FC(256), SM(100)")
    dense = resolve_start_arch("densenet_bc(40, 12)", (1, 28, 28), 10)
    assert dense == densenet_bc(40, 12, 10, spatial=28)
    assert resolve_start_arch("C(8,3,1), SM(3)", (1, 8, 8), 3) == Architecture.parse("C(8,3,1), SM(3)")
