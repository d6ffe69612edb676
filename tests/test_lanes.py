"""The test lanes: `make test` is the whole suite, `make test-fast` leaves out what trains long, starts Ray or drives
a browser; every test has a time limit; and no test writes into the checkout."""
import re
import tomllib

from tests.conftest import CHECKOUT, LIMITS_S, checkout_state


def test_the_fast_lane_leaves_out_every_marked_lane_and_make_test_runs_everything():
    makefile = (CHECKOUT / "Makefile").read_text()
    assert re.search(r"^test:.*\n\t\$\(PY\) -m pytest\n", makefile, re.MULTILINE)
    fast = re.search(r"^test-fast:.*\n\t\$\(PY\) -m pytest -m \"(.*)\"\n", makefile, re.MULTILINE).group(1)
    pytest_options = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    lanes = {line.split(":")[0] for line in pytest_options["markers"]}
    assert lanes == set(LIMITS_S) and set(fast.split(" and ")) == {f"not {lane}" for lane in LIMITS_S}
    assert 0 < pytest_options["timeout"] < min(LIMITS_S.values())
    assert "make test" in (CHECKOUT / ".ci" / "run").read_text()


def test_a_file_left_in_the_checkout_is_seen_by_the_guard():
    before = checkout_state()
    if before is None:
        return  # not a git checkout: the guard is off
    stray = CHECKOUT / "runs-left-by-a-test.sqlite"
    stray.write_text("")
    try:
        assert any(stray.name in line for line in checkout_state() - before)
    finally:
        stray.unlink()
    assert checkout_state() == before
