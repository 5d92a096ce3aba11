"""A run directory is bound to its config (stn_jax.rundir, used by the two training loops)."""

import json
import os

import ml_collections
import pytest

from stn_jax import coloc_train, rundir


def _config(**overrides):
  config = ml_collections.ConfigDict(
    {"seed": 0, "log_every": 10, "data": {"variant": "e", "classes": [1, 2], "sizes": (3, 4)}}
  )
  config.update(overrides)
  return config


def test_differences_flatten_nested_fields_and_compare_as_stored():
  stored = json.loads(json.dumps(_config().to_dict()))  # tuples become lists, as in config.json
  assert rundir.differences(stored, _config()) == ({}, [])
  changed, one_sided = rundir.differences(stored, _config(seed=1, log_every=5))
  assert changed == {"seed": (0, 1)} and one_sided == []
  new_field = _config()
  new_field.extra = 1.0
  assert rundir.differences(stored, new_field) == ({}, ["extra"])


def test_claim_refuses_a_different_config_only_when_the_directory_has_progress(tmp_path):
  rundir.claim(str(tmp_path), _config(), has_progress=False)
  assert json.loads((tmp_path / "config.json").read_text())["seed"] == 0
  rundir.claim(str(tmp_path), _config(seed=3), has_progress=False)  # nothing to protect: replaced
  assert json.loads((tmp_path / "config.json").read_text())["seed"] == 3
  with pytest.raises(rundir.ConfigMismatchError, match=r"seed: 3 in the run, 0 now"):
    rundir.claim(str(tmp_path), _config(), has_progress=True)
  assert json.loads((tmp_path / "config.json").read_text())["seed"] == 3  # left as it was
  rundir.claim(str(tmp_path), _config(seed=3, log_every=1), has_progress=True)  # bookkeeping only


def test_the_co_localisation_loop_may_change_its_class_list_but_nothing_else(tmp_path):
  rundir.claim(str(tmp_path), _config(), has_progress=False, ignore=coloc_train._RERUN_FIELDS)
  more = _config()
  more.data.classes = [1, 2, 3]
  rundir.claim(str(tmp_path), more, has_progress=True, ignore=coloc_train._RERUN_FIELDS)
  other = _config()
  other.data.variant = "t"
  with pytest.raises(rundir.ConfigMismatchError, match=r"data\.variant"):
    rundir.claim(str(tmp_path), other, has_progress=True, ignore=coloc_train._RERUN_FIELDS)


def test_claim_leaves_an_unchanged_config_file_alone(tmp_path):
  rundir.claim(str(tmp_path), _config(), has_progress=False)
  path = tmp_path / "config.json"
  os.utime(path, (1, 1))
  rundir.claim(str(tmp_path), _config(), has_progress=True)
  assert path.stat().st_mtime == 1  # same content: not rewritten
  rundir.claim(str(tmp_path), _config(log_every=3), has_progress=True)
  assert path.stat().st_mtime != 1 and json.loads(path.read_text())["log_every"] == 3


@pytest.mark.parametrize("text", ['{"seed": 0, "log_ev', "null", "[1]"])  # cut short, or not a config
def test_claim_refuses_an_unreadable_config_only_when_there_is_progress(tmp_path, text):
  path = tmp_path / "config.json"
  path.write_text(text)
  with pytest.raises(rundir.ConfigError, match=r"config\.json cannot be read .* holds progress"):
    rundir.claim(str(tmp_path), _config(), has_progress=True)
  assert path.read_text() == text
  rundir.claim(str(tmp_path), _config(), has_progress=False)  # nothing to protect: replaced
  assert json.loads(path.read_text())["seed"] == 0


def test_claim_warns_when_a_directory_with_progress_has_no_config(tmp_path, caplog):
  rundir.claim(str(tmp_path), _config(), has_progress=True)
  assert "holds progress but no config.json" in caplog.text
  assert json.loads((tmp_path / "config.json").read_text())["seed"] == 0
