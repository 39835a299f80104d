"""The training engine: one `TrainState`, one compiled train chunk, any registered learner.

* `state`: `TrainState`, every member's `superlearner.learners.base.MemberState` plus the
  run-level counters and meta-controller state.
* `curriculum_stage`, `league_stage`, `meta_stage`: each pillar's stage over a member (or, for
  the meta-controller, over the population), picked from a registry by the config's ``kind``.
* `chunk`: the population mapped over members, K iterations per compiled chunk.
* `build`: `make_engine`, which puts a run together from its config.

The host loop (`superlearner.run.trainer`) only logs, checkpoints and evaluates between chunks.
"""

from superlearner.engine.build import LEARNER_UPDATED, Engine, check_run, initial_hparams, make_engine
from superlearner.engine.chunk import (
    INIT_COMPILER_OPTIONS,
    compile_concurrently,
    initial_state,
    lower_init,
    make_train_chunk,
    map_population,
)
from superlearner.engine.curriculum_stage import (
    CURRICULUM_STAGES,
    SKIPPING_SAMPLERS,
    Teacher,
    curriculum_hparams,
    initial_curriculum_hparams,
    make_curriculum_stage,
    make_sampler,
    make_teacher,
    score_levels,
)
from superlearner.engine.league_stage import LEAGUE_STAGES, initial_league_hparams, make_league_stage
from superlearner.engine.meta_stage import CONTROLLERS, MetaInput, init_meta, make_meta_controller, meta_step, spread_hparams
from superlearner.engine.state import TrainState

__all__ = [
    "CONTROLLERS", "CURRICULUM_STAGES", "Engine", "INIT_COMPILER_OPTIONS", "LEAGUE_STAGES", "LEARNER_UPDATED",
    "MetaInput", "SKIPPING_SAMPLERS", "Teacher", "TrainState", "check_run", "compile_concurrently",
    "curriculum_hparams", "init_meta", "initial_curriculum_hparams", "initial_hparams", "initial_league_hparams",
    "initial_state", "lower_init", "make_curriculum_stage", "make_engine", "make_league_stage",
    "make_meta_controller", "make_sampler", "make_teacher", "make_train_chunk", "map_population", "meta_step",
    "score_levels", "spread_hparams",
]
