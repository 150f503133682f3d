"""Resume after a killed server, bit-identical, for Cyclic (its site orders) and FedAvg with DP-SGD and Ditto
(the accountants and the personal models): ``tests/test_resume.py``'s check, in a module of its own so that
pytest-xdist runs it beside that one."""

import pytest

from tests.test_resume import DP_DITTO, check_killed_server_resumes

pytestmark = pytest.mark.simulator


@pytest.mark.parametrize("strategy,variant", [("cyclic", {}), ("fedavg", DP_DITTO)])
def test_killed_server_resumes_bit_identical(strategy, variant, tmp_path, data_root):
    check_killed_server_resumes(strategy, variant, tmp_path, data_root)
