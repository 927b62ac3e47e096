"""The scorer pool sized from Ray's resources (optirag.scoring.sizing): pure arithmetic."""
import pytest

from optirag.config import ConfigError
from optirag.scoring.config import ScoringConfig
from optirag.scoring.sizing import size_actors


def _size(nodes, **settings):
    return size_actors(ScoringConfig(**settings), [{"CPU": c, **({"GPU": g} if g else {})} for c, g in nodes])


def test_two_cores_get_one_actor_with_both_threads_and_leave_the_read_stages_their_share():
    s = _size([(2, 0)])
    assert (s.actors, s.actor_num_cpus, s.torch_threads, s.num_gpus) == (1, 1.5, 2, 0.0)


def test_a_big_node_is_split_into_actors_of_at_most_max_threads():
    s = _size([(16, 0)])
    assert (s.actors, s.actor_num_cpus, s.torch_threads) == (2, 7.75, 8)
    s = _size([(16, 0)], max_threads_per_actor=4)
    assert (s.actors, s.torch_threads) == (4, 4)
    assert s.actors * s.actor_num_cpus + 0.5 <= 16


def test_a_cluster_gets_actors_on_every_node_that_fits_one_but_not_on_a_cpu_less_head():
    s = _size([(0, 0), (4, 0), (4, 0)])
    assert (s.actors, s.actor_num_cpus, s.torch_threads) == (2, 3.5, 4)


def test_gpu_runs_get_one_actor_per_gpu_share():
    s = _size([(8, 2), (8, 1)], num_gpus=1)
    assert (s.actors, s.actor_num_cpus, s.torch_threads, s.num_gpus) == (3, 1.0, 1, 1)


def test_explicit_settings_win():
    s = _size([(2, 0)], actors=2, actor_num_cpus=0.75, torch_threads=1)
    assert (s.actors, s.actor_num_cpus, s.torch_threads) == (2, 0.75, 1)


def test_a_node_too_small_for_the_read_stages_is_a_clear_error():
    with pytest.raises(ConfigError, match="read_num_cpus"):
        _size([(0.5, 0)])
