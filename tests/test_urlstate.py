"""Links that reproduce a setup (khrbm/app/urlstate.py): the query is read through the config's checks,
anything unusable falls back to the preset with a message naming it, and parsing never raises."""
from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from khrbm.app import presets
from khrbm.app.urlstate import Setup, encode, parse, preset_setup
from khrbm.config import FIELD, FIELDS, ConfigError, RunConfig, parse_text

STORY = preset_setup("story")


def test_a_link_names_a_preset_and_its_changes():
    setup, problems = parse("?preset=story&kh_mode=bu&eps0=0.02&compare=false", "bars")
    assert problems == []
    assert setup == Setup("story", STORY.config.replace(kh_mode="bu", eps0=0.02), False)
    assert encode(setup) == "preset=story&kh_mode=bu&eps0=0.02&compare=false"
    assert parse("", "bars") == (preset_setup("bars"), [])
    assert parse("preset=story", "bars")[0] == STORY


@pytest.mark.parametrize("query,needle", [
    ("preset=story&eps0=-1", "'eps0'"),
    ("preset=story&eps0=nan", "'eps0'"),
    ("preset=story&kh_mode=sideways", "'kh_mode'"),
    ("preset=story&n_hidden=2.5", "'n_hidden'"),
    ("preset=story&compare=maybe", "'compare'"),
    ("preset=story&learning_rate=0.1", "'learning_rate'"),
    ("preset=story&eps0=0.01&eps0=0.02", "'eps0' is given 2 times"),
    ("preset=nope", "unknown preset 'nope'"),
    ("preset=story&" + "x" * 5000, "longer than"),
])
def test_a_bad_part_is_named_and_the_preset_value_stays(query, needle):
    setup, problems = parse(query, "story")
    assert len(problems) == 1 and needle in problems[0], problems
    assert setup == STORY


def test_a_setting_that_does_not_fit_the_rest_falls_back_alone():
    # classification needs labels: with bars it is refused, the other changes stay
    setup, problems = parse("preset=bars&task=classification&eps0=0.01", "story")
    assert setup.config == preset_setup("bars").config.replace(eps0=0.01)
    assert len(problems) == 1 and problems[0].startswith("task = 'classification'")
    # together they fit (classification on MNIST), one by one the first would not: all are taken
    setup, problems = parse("preset=bars&dataset=mnist&task=classification", "story")
    assert problems == [] and (setup.config.dataset, setup.config.task) == ("mnist", "classification")


def test_the_place_may_refuse_a_setting_through_check():
    def check(cfg):                        # the app checks ℓ against the model (run.check_ell)
        if cfg.ell >= cfg.n_hidden:
            raise ConfigError("ell", f"must be below the {cfg.n_hidden} postsynaptic units")

    setup, problems = parse("preset=bars&kh_mode=bu&ell=56&delta=0.3", "story", check)
    assert setup.config == preset_setup("bars").config.replace(delta=0.3)
    assert len(problems) == 1 and "ell = '56'" in problems[0] and "postsynaptic" in problems[0]


def test_session_args_as_panel_gives_them():
    args = {"preset": [b"story"], "eps0": [b"0.03"], "delta": [b"\xff\xfe"]}
    setup, problems = parse(args, "bars")
    assert setup.config == STORY.config.replace(eps0=0.03)
    assert len(problems) == 1 and "'delta'" in problems[0]


def test_every_preset_id_is_short_and_link_safe():
    for pid in presets.PRESETS:
        assert len(pid) <= 24 and pid == pid.lower() and all(c.isalnum() or c == "-" for c in pid), pid
        assert parse(f"preset={pid}", "story") == (preset_setup(pid), [])


# --- property tests ---------------------------------------------------------------------------------------
def _field_values(f):
    if f.choices:
        out = st.sampled_from(f.choices)
    elif f.kind is bool:
        out = st.booleans()
    elif f.kind is int:
        out = st.integers(f.bounds[0], f.bounds[1])
    else:
        out = st.floats(f.bounds[0], f.bounds[1], allow_nan=False, allow_infinity=False)
    return st.one_of(st.none(), out) if f.optional else out


@st.composite
def setups(draw):
    pid = draw(st.sampled_from(sorted(presets.PRESETS)))
    base = preset_setup(pid)
    names = draw(st.sets(st.sampled_from([f.name for f in FIELDS]), max_size=8))
    changes = {n: draw(_field_values(FIELD[n])) for n in sorted(names)}
    try:
        cfg = base.config.replace(**changes)
    except ConfigError:
        cfg = base.config
    return Setup(pid, cfg, draw(st.booleans()))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(setups())
def test_parsing_a_setups_link_gives_it_back(setup):
    assert parse(encode(setup), "story") == (setup, [])
    assert parse("?" + encode(setup), "bars")[0] == setup


QUERY_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
KEYS = st.one_of(st.sampled_from([f.name for f in FIELDS] + ["preset", "compare"]), QUERY_TEXT)


def _assert_sane(setup, problems):
    assert isinstance(setup.config, RunConfig) and setup.preset in presets.PRESETS
    assert isinstance(setup.compare, bool)
    assert all(isinstance(p, str) and "\n" not in p and len(p) < 400 for p in problems)


@settings(max_examples=400, deadline=None)
@given(st.one_of(QUERY_TEXT, st.lists(st.tuples(KEYS, QUERY_TEXT), max_size=12).map(
    lambda kv: "&".join(f"{k}={v}" for k, v in kv))))
def test_any_query_string_gives_a_valid_setup_and_one_line_problems(query):
    _assert_sane(*parse(query, "story"))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, st.lists(st.one_of(QUERY_TEXT, st.binary(max_size=40)), min_size=1, max_size=3),
                       max_size=10))
def test_any_session_args_give_a_valid_setup_naming_each_unused_key(args):
    setup, problems = parse(args, "story")
    _assert_sane(setup, problems)
    for key, values in args.items():
        if key in FIELD and len(values) == 1:
            try:
                wanted = parse_text(FIELD[key], values[0] if isinstance(values[0], str)
                                     else values[0].decode("utf-8", "replace"))
            except ConfigError:
                assert any(f"'{key}'" in p for p in problems), (key, values, problems)
                continue
            got = getattr(setup.config, key)
            if not (got == wanted or (isinstance(got, float) and math.isclose(got, wanted))):
                assert any(p.startswith(f"{key} = ") for p in problems), (key, values, problems)
