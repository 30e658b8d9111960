"""The committed fixtures are exactly what the reference regenerates, and they
load through the restricted unpickler only."""
import pickle

import numpy as np
import pytest

import common
import pickles
from staff import fixtures


def committed_files():
    return {path.relative_to(common.TESTS_DIR): path.read_bytes()
            for path in common.TESTS_DIR.glob('*_unittest_*_input/*')}


def test_fixtures_regenerate_byte_identical(tmp_path):
    reference = common.load_solution(common.KIT_DIR / 'solution.py', name='reference_for_fixtures')
    fixtures.build_fixtures(tmp_path, reference)
    regenerated = {path.relative_to(tmp_path): path.read_bytes()
                   for path in tmp_path.glob('*_unittest_*_input/*')}
    committed = committed_files()
    assert sorted(regenerated) == sorted(committed)
    assert [name for name in committed if committed[name] != regenerated[name]] == []


def test_every_case_loads_and_has_finite_arrays():
    for fixture in common.find_fixtures().values():
        for entry in fixture.cases:
            case = fixture.load_case(entry)
            arrays = [value for value in _leaves(case) if isinstance(value, np.ndarray)]
            floats = [array for array in arrays if array.dtype.kind == 'f']
            assert all(np.all(np.isfinite(array)) for array in floats), entry


def _leaves(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


class Payload:
    def __reduce__(self):
        return (print, ('owned',))


def test_restricted_unpickler_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / 'evil.pkl'
    path.write_bytes(pickle.dumps({'inputs': Payload()}))
    with pytest.raises(pickles.FixtureError, match='refusing to load builtins.print'):
        pickles.load_pickle(path)


def test_broken_description_is_a_clear_error(tmp_path):
    directory = tmp_path / '00_unittest_relu_input'
    directory.mkdir()
    (directory / 'description.json').write_text('{"section": "2.1.1"}')
    with pytest.raises(pickles.FixtureError, match='bad description.json'):
        common.find_fixtures(tmp_path)
