"""One fixture for every test file: in-process runs of the scripts' main() set torch's thread count and, with
--torch-deterministic, its determinism flag; restore both after each test so no test sees another's."""

import pytest
import torch


@pytest.fixture(autouse=True)
def restore_torch_state():
    deterministic, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    yield
    torch.use_deterministic_algorithms(deterministic)
    torch.set_num_threads(threads)
