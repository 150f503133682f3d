"""Resume after a killed server, bit-identical, for Cyclic (its site orders) and SCAFFOLD with DP-SGD and Ditto
(server control c; the sites' c_i, accountants and personal models): ``tests/test_resume.py``'s check, in a
module of its own so that pytest-xdist runs it beside that one."""

import pytest

from tests.test_resume import DP_DITTO, check_killed_server_resumes

pytestmark = pytest.mark.simulator


@pytest.mark.parametrize("strategy,variant", [("cyclic", {}), ("scaffold", DP_DITTO)])
def test_killed_server_resumes_bit_identical(strategy, variant, tmp_path, data_root):
    check_killed_server_resumes(strategy, variant, tmp_path, data_root)
