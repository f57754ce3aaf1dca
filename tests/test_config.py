"""RunConfig: validation names the field and its range; JSON round trip; live vs model fields."""
import json

import pytest

from khrbm.config import (FIELD, FIELDS, LIVE_FIELDS, MID_RUN_FIELDS, RUN_WIDE_FIELDS, ConfigError, RunConfig,
                          parse_text)


def test_defaults_round_trip_through_json():
    cfg = RunConfig(n_hidden=37, kh_mode="bu", eps0=0.008, delta=0.2, horizon=12.5, seed=9)
    again = RunConfig.from_json(cfg.to_json())
    assert again == cfg
    assert json.loads(cfg.to_json())["horizon"] == 12.5


@pytest.mark.parametrize("field,value,fragment", [
    ("eps0", -1, "[0.0, 10.0]"),
    ("n_hidden", 0, "[1, 10000]"),
    ("n_hidden", 2.5, "an integer"),
    ("kh_mode", "sideways", "one of off, td, bu"),
    ("lr", float("nan"), "a number"),
    ("ell_band", "yes", "true or false"),
    ("dataset", None, "got null"),
])
def test_invalid_value_names_field_and_range(field, value, fragment):
    with pytest.raises(ConfigError) as err:
        RunConfig(**{field: value})
    message = str(err.value)
    assert err.value.field == field and f"'{field}'" in message and fragment in message
    assert "\n" not in message


def test_unknown_field_and_bad_json_are_config_errors():
    with pytest.raises(ConfigError, match="unknown field"):
        RunConfig.from_dict({"n_hiden": 10})
    with pytest.raises(ConfigError, match="not valid JSON"):
        RunConfig.from_json('{"n_hidden": 10,')
    with pytest.raises(ConfigError, match="JSON object"):
        RunConfig.from_json("[1, 2]")


def test_classification_on_bars_is_refused():
    with pytest.raises(ConfigError, match="labels"):
        RunConfig(dataset="bars", task="classification")


def test_horizon_defaults_to_epochs():
    assert RunConfig(epochs=40).kh_horizon == 40.0
    assert RunConfig(epochs=40, horizon=10).kh_horizon == 10.0


def test_live_fields_are_the_ones_the_brief_names():
    assert {"eps0", "delta", "ell", "radius", "p", "kh_mode", "horizon", "lr", "k"} <= LIVE_FIELDS
    assert not {"n_hidden", "init", "dataset", "task", "dtype"} & LIVE_FIELDS
    assert len({f.name for f in FIELDS}) == len(FIELDS)


def test_epochs_alone_is_run_wide_and_a_running_trainer_takes_it():
    assert RUN_WIDE_FIELDS == {"epochs"} and not RUN_WIDE_FIELDS & LIVE_FIELDS
    assert MID_RUN_FIELDS == LIVE_FIELDS | {"epochs"}


def test_dataclass_and_field_table_declare_the_same_fields():
    import dataclasses
    declared = [(f.name, f.default) for f in dataclasses.fields(RunConfig)]
    assert declared == [(f.name, f.default) for f in FIELDS]


def test_values_from_text_as_the_cli_and_links_give_them():
    assert parse_text(FIELD["horizon"], "None") is None and parse_text(FIELD["horizon"], "12.5") == 12.5
    assert parse_text(FIELD["ell_band"], "yes") is True and parse_text(FIELD["shuffle_xi"], "0") is False
    assert parse_text(FIELD["n_hidden"], "200") == 200 and parse_text(FIELD["n_hidden"], "2e2") == 200
    assert parse_text(FIELD["kh_mode"], "td") == "td"
    for name, text in (("n_hidden", "2.5"), ("n_hidden", "9" * 5000), ("eps0", "inf"), ("kh_mode", "TD"),
                       ("ell_band", "maybe"), ("seed", "none"), ("lr", "0x10")):
        with pytest.raises(ConfigError) as err:
            parse_text(FIELD[name], text)
        assert err.value.field == name and len(str(err.value)) < 200, str(err.value)
