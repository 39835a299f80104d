"""Typed, validated experiment configs, read from YAML presets in ``experiments/``.

Every field is declared once, with its type, a one-line description and its accepted range.
A misspelled key, a wrong type or an out-of-range value raises `ConfigError` naming the file,
the key, what was given and what is accepted, before anything is compiled or written.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from superlearner.core.registry import DEFAULT_ENV
from superlearner.errors import ConfigError
from superlearner.learners.alphazero_learner import AlphaZeroConfig
from superlearner.learners.base import learner_def, learner_kinds, learner_sections
from superlearner.learners.ppo_learner import HparamsConfig
from superlearner.schema import field

EXPERIMENTS_DIR_ENV = "SUPERLEARNER_EXPERIMENTS"


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """Which environment to train on."""

    id: str = field(DEFAULT_ENV, "registered env id (see `superlearner envs`)")
    options: dict = field(dict, "static options passed to superlearner.make (shape settings)")


@dataclasses.dataclass(frozen=True)
class LearnerConfig:
    """Static (shape-defining) learner settings; changing them recompiles."""

    kind: str = field("ppo", "learner algorithm: a registered learner.kind (ppo; alphazero: Gumbel AlphaZero with search, settings in the alphazero section; `superlearner.learners.register_learner` adds more)")
    num_envs: int = field(4, "parallel environments per population member (alphazero: self-play games in parallel)", low=1)
    num_steps: int = field(128, "rollout length per iteration (alphazero: moves played in every game per iteration)", low=1)
    num_epochs: int = field(4, "passes over each rollout", low=1)
    num_minibatches: int = field(4, "minibatches per epoch (must divide num_envs * num_steps)", low=1)
    network: Literal["mlp", "conv"] = field("mlp", "torso: mlp for vectors, conv for boards and grids")
    hidden_sizes: tuple = field((64, 64), "widths of the hidden layers of the MLP (and the head after a conv torso)")
    conv_channels: tuple = field((32, 32), "channels of the 3x3 conv layers of the conv torso")
    activation: Literal["tanh", "relu"] = field("tanh", "hidden activation")
    anneal_lr: bool = field(True, "linearly anneal the learning rate to zero over the run")
    update_rule: Literal["ppo_clip", "dpo", "learned", "switch"] = field("ppo_clip", "policy update rule (drift function); learned: a drift network, see update_rule_file; switch: all three in one program, a traced index per member picks one (meta.kind=bandit with meta.arms.update_rule)")
    update_rule_file: str = field("", "update_rule=learned: .npz file of the drift network's weights (superlearner.run.discovery writes one; empty: start at PPO-clip); relative to the YAML file's folder when written there, to the working directory on the command line")
    normalize_advantages: bool = field(True, "normalise advantages per minibatch")
    clip_value_loss: bool = field(True, "clip the value loss like the policy ratio")
    bootstrap_truncation: bool = field(True, "bootstrap from the value of the last observation when an episode is truncated")
    compute_dtype: Literal["float32", "bfloat16"] = field("float32", "dtype of the network's matmuls and convolutions (bfloat16 pays on GPU/TPU; parameters, optimizer state and losses stay float32)")
    memory: Literal["none", "lstm"] = field("none", "policy memory: none (feed-forward), or lstm (an LSTM after the torso, for partially observed envs; one-player envs, PPO)")
    memory_size: int = field(128, "memory=lstm: units of the LSTM", low=1)
    sequence_length: int = field(0, "memory=lstm: steps per sequence the update replays from its stored carry (must divide num_steps; 0: the whole rollout)", low=0)


@dataclasses.dataclass(frozen=True)
class LeagueConfig:
    """Self-play league (two-player zero-sum games). Weights and rates are adaptable starting values."""

    kind: Literal["default", "none", "snapshots"] = field("default", "none (play the current self only), snapshots (a league of frozen snapshots, opponents drawn by the weights below), or default: the learner's own default (ppo: snapshots, alphazero: none)")
    capacity: int = field(16, "frozen snapshots kept (a ring: the oldest is replaced)", low=1)
    snapshot_every: int = field(10, "iterations between snapshots (the least, with snapshot_rule=beat)", low=1)
    snapshot_rule: Literal["every", "beat"] = field("every", "add a snapshot every snapshot_every iterations, or when the learner beats the league by beat_margin")
    weight_self: float = field(0.5, "probability weight of playing the current self", low=0.0)
    weight_uniform: float = field(0.2, "weight of a uniformly drawn past snapshot (fictitious self-play)", low=0.0)
    weight_pfsp_hard: float = field(0.3, "weight of PFSP favouring snapshots we lose to", low=0.0)
    weight_pfsp_even: float = field(0.0, "weight of PFSP favouring snapshots near an even score", low=0.0)
    weight_meta: float = field(0.0, "weight of a snapshot drawn from the league's meta-strategy (PSRO)", low=0.0)
    meta_solver: Literal["uniform", "nash"] = field("uniform", "the league's policy over its snapshots: uniform (fictitious play) or a Nash equilibrium of their payoff matrix (PSRO-Nash)")
    payoff_games: int = field(0, "games a new snapshot plays against each snapshot to fill the payoff matrix (0 = none; meta_solver=nash needs some)", low=0)
    solver_iterations: int = field(1000, "regret-matching iterations of the nash meta-solver per new snapshot", low=1)
    opening_moves: int = field(0, "training games open with a uniform number in 0..opening_moves of random plies (varied positions)", low=0)
    opponent_temperature: float = field(1.0, "static: league opponents sample their moves from softmax(logits / T); 0 plays each one's most probable move (with opponent_simulations: Gumbel noise on, or off at 0)", low=0.0, high=100.0)
    opponent_simulations: int = field(0, "static: learners with a search of their own (alphazero): league opponents choose their moves by that search with this many simulations, each with its own snapshot's network (0: by its raw policy)", low=0)
    opponent_groups: int = field(0, "static: 0 draws every game's opponent on its own; G > 0 splits the games into G equal groups whose new games in a rollout share one drawn opponent, so a reply runs 2 networks per group instead of every league opponent's (must divide learner.num_envs)", low=0)
    payoff_decay: float = field(0.02, "step size of the decayed-average win rates", low=0.0, high=1.0)
    beat_margin: float = field(0.7, "league score above which a snapshot is added (snapshot_rule=beat)", low=0.0, high=1.0)


@dataclasses.dataclass(frozen=True)
class ArenaConfig:
    """Strength against fixed anchors, measured during training (two-player games)."""

    anchors: tuple = field(("random",), "anchor specs to play, e.g. [random, minimax:2] or [perfect]")
    every_chunks: int = field(1, "chunks between arena measurements (0 = never)", low=0)
    games: int = field(64, "games per anchor and measurement, half in each seat", low=2)
    opening_moves: int = field(0, "uniformly random plies at the start of each arena game (varied openings)", low=0)
    openings: Literal["random", "all-first-moves"] = field("random", "random: opening_moves random plies; all-first-moves: every legal first move forced in turn, in both seats (games rounded up to fit)")


@dataclasses.dataclass(frozen=True)
class RatingConfig:
    """The run's measured progress: an online Bradley-Terry rating of every member, played inside
    the train chunk (two-player games; `superlearner.selfplay.online_rating`)."""

    kind: Literal["none", "bradley_terry"] = field("none", "none, or bradley_terry: every every_iterations iterations each member (greedy, raw policy) plays rating.anchors and its previous round; the Bradley-Terry fit over the anchors and the last rating.history rounds is its rating, in Elo with random (the first anchor) at 0")
    anchors: tuple = field((), "anchor specs the rating plays, the first one the scale's zero (empty: arena.anchors)")
    every_iterations: int = field(10, "iterations between rating rounds", low=1)
    games: int = field(32, "games per opponent and round, half in each seat", low=2)
    opening_moves: int = field(2, "uniformly random plies at the start of each rating game (varied openings)", low=0)
    history: int = field(32, "rounds kept in the fit (older rounds leave it)", low=2)
    prior_sd: float = field(2000.0, "standard deviation in Elo of the fit's Gaussian prior on each rating (it keeps perfect records finite; a narrow one pulls a strong learner's rating toward 0)", low=1.0)


@dataclasses.dataclass(frozen=True)
class CurriculumConfig:
    """Autonomous curriculum over the env's levels (envs with a level space: maze's mazes, the start
    positions of connect four and othello)."""

    kind: Literal["none", "dr", "plr", "accel", "sfl", "lp"] = field("none", "none (the env's default level), dr, plr (robust), accel, sfl, or lp (a learning-progress teacher over one parameter of the env's params); in a two-player game the levels are start positions, drawn game by game")
    capacity: int = field(4000, "levels the replay buffer holds", low=1)
    prioritization: Literal["rank", "proportional"] = field("rank", "how scores become replay probabilities")
    score: Literal["pvl", "maxmc", "learnability"] = field("pvl", "PLR/ACCEL level score: positive value loss (two-player games: the search's value error over the game), MaxMC (one-player envs), or learnability p(1-p) of the success rate (two-player games: of the start side's score) estimated as SFL does (SFL always uses learnability)")
    standard_start_rate: float = field(0.5, "two-player games: probability that a game starts from the standard start instead of a level the curriculum draws (evaluation always starts from the standard start)", low=0.0, high=1.0)
    num_edits: int = field(5, "ACCEL: edits per mutation", low=1)
    min_fill_ratio: float = field(0.5, "replay only once the buffer is this full", low=0.0, high=1.0)
    require_solvable: bool = field(True, "only solvable levels enter the buffer (and mutants are redrawn)")
    replay_prob: float = field(0.8, "probability of a replay step (adaptable)", low=0.0, high=1.0)
    temperature: float = field(0.3, "prioritisation temperature (adaptable)", low=1e-3, high=100.0)
    staleness_coef: float = field(0.3, "mix of staleness into replay probabilities (adaptable)", low=0.0, high=1.0)
    fresh_ratio: float = field(0.5, "SFL: share of fresh levels in each batch (adaptable)", low=0.0, high=1.0)
    sfl_prior: float = field(0.5, "SFL and score learnability: pseudo-successes and pseudo-failures added to a level's measured episodes (a Beta prior), so one or two episodes never measure a success rate of exactly 0 or 1", low=0.0, high=100.0)
    sfl_memory: float = field(0.5, "SFL and score learnability: weight a replayed level's stored success rate keeps against its new measurement (0 = the latest rollout only)", low=0.0, high=0.99)
    lp_field: str = field("length", "lp: the field of the env's params the teacher varies (e.g. cartpole's pole half-length)")
    lp_low: float = field(0.1, "lp: lowest value of that field")
    lp_high: float = field(2.0, "lp: highest value of that field")
    lp_bins: int = field(10, "lp: equal bins the range is cut into (the teacher's arms)", low=1)
    lp_epsilon: float = field(0.1, "lp: probability mass spread uniformly over the bins (adaptable)", low=0.0, high=1.0)
    lp_temperature: float = field(0.2, "lp: softmax temperature over normalised |learning progress| (adaptable)", low=1e-3, high=100.0)
    probe_every_chunks: int = field(0, "chunks between measurements of the held-out solve rate (the env's named levels) and the level buffer's statistics and gallery (0 = never)", low=0)
    probe_episodes: int = field(4, "episodes (actions sampled from the policy) per named held-out level and measurement", low=1)
    probe_gallery: int = field(8, "highest-scored buffer levels saved per measurement for the gallery figure (0 = none)", low=0)


@dataclasses.dataclass(frozen=True)
class DiscoveryConfig:
    """Offline discovery of a learned drift function (``python -m superlearner.run.discovery``).

    Each candidate rule trains the experiment's PPO run (env, learner, hparams,
    train.total_env_steps) once per meta-training level and seed; its fitness is the final
    return. Levels map a name to overrides of the env's default level (e.g. {length: 0.8}).
    """

    strategy: Literal["open_es"] = field("open_es", "evolution strategy (evosax): OpenAI-ES with antithetic sampling")
    population_size: int = field(16, "candidate rules per generation (even)", low=2)
    generations: int = field(10, "ES generations", low=1)
    sigma: float = field(0.05, "ES search noise on the rule's weights", low=1e-6, high=10.0)
    learning_rate: float = field(0.03, "Adam step size of the ES mean", low=0.0, high=10.0)
    hidden_size: int = field(16, "hidden units of the drift network", low=1)
    seeds_per_candidate: int = field(1, "training seeds per candidate and level (shared by all candidates of a generation)", low=1)
    final_fraction: float = field(0.25, "fitness: mean return over this last fraction of each inner run's iterations", low=0.01, high=1.0)
    meta_train_levels: dict = field(dict, "levels the rule is meta-trained on: name -> env-level overrides")
    meta_test_levels: dict = field(dict, "held-out levels measured at the end: name -> env-level overrides")
    test_seeds: int = field(8, "seeds per held-out level for the final comparison with PPO-clip", low=2)
    meta_train_experiments: tuple = field((), "more meta-training tasks beside the experiment's own env: preset names or YAML paths of single-agent PPO experiments on other envs, each trained at its own sizes, hyperparameters and budget; a candidate's fitness is then its centred rank averaged over the tasks")
    meta_test_experiment: str = field("", "a held-out task also measured at the end: a preset name or YAML path of a single-agent PPO experiment, trained at its own sizes, hyperparameters and budget with the discovered rule and with PPO-clip ('' = none)")


@dataclasses.dataclass(frozen=True)
class MetaConfig:
    """The meta-learner that adapts each member's hyperparameters while the population trains."""

    kind: Literal["none", "pbt", "bandit", "metagrad"] = field("none", "meta-controller: none, population based training, a sliding-window UCB bandit over meta.arms, or online meta-gradients on meta.adapt")
    adapt: tuple = field(("learning_rate",), "hyperparameters the controller may change")
    init_low: dict = field(dict, "per hyperparameter, the low end of a log-uniform start (e.g. learning_rate: 1.0e-5)")
    init_high: dict = field(dict, "per hyperparameter, the high end of a log-uniform start (e.g. learning_rate: 0.1)")
    interval: int = field(10, "iterations between PBT generations, bandit pulls or meta-gradient steps", low=1)
    ready_iterations: int = field(10, "iterations a member trains after being replaced before it may be again", low=0)
    truncation_fraction: float = field(0.25, "bottom fraction replaced by copies of the top fraction", low=0.01, high=0.5)
    perturb_factor: float = field(1.25, "explore multiplies (or divides) a copied value by this", low=1.0, high=10.0)
    resample_probability: float = field(0.0, "probability that explore resamples a value instead", low=0.0, high=1.0)
    progress_window: int = field(5, "iterations of recent return averaged into the fitness", low=1)
    progress: Literal["return", "anchors", "rating"] = field("return", "PBT fitness and bandit reward: return (recent mean training return), anchors (self-play: mean score in games against arena.anchors, played inside the train chunk when a step is due) or rating (self-play: the online rating of the rating section; the bandit's reward is its change between pulls)")
    progress_games: int = field(64, "progress=anchors: games per anchor and member at each measurement, half in each seat", low=2)
    arms: dict = field(dict, "bandit: {field: [value per arm]}, a PPO hyperparameter or update_rule: [ppo_clip, dpo, learned] (needs learner.update_rule=switch)")
    bandit_window: int = field(20, "bandit: rewards (progress changes between pulls) each member remembers", low=1)
    bandit_exploration: float = field(1.0, "bandit: UCB exploration coefficient, in units of the return", low=0.0)
    meta_learning_rate: float = field(1e-3, "metagrad: Adam step size on the adapted hyperparameters' unconstrained values", low=0.0, high=10.0)
    outer_gamma: float = field(0.99, "metagrad: fixed discount of the outer objective and its critic", low=0.0, high=1.0)
    outer_gae_lambda: float = field(0.95, "metagrad: fixed GAE lambda of the outer objective", low=0.0, high=1.0)
    outer_vf_coef: float = field(0.5, "metagrad: weight of the critic's error in the outer objective", low=0.0, high=1e3)
    critic_learning_rate: float = field(1e-3, "metagrad: Adam step size of the outer objective's critic", low=0.0, high=1.0)
    discovery: DiscoveryConfig = field(DiscoveryConfig, "offline discovery of a learned drift (superlearner.run.discovery)")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How long to train and how the host loop checkpoints and evaluates."""

    total_env_steps: int = field(500_000, "env steps per population member over the whole run", low=1)
    population_size: int = field(1, "members trained side by side as one vmapped program", low=1)
    seed: int = field(0, "random seed of the run", low=0)
    iterations_per_chunk: int = field(61, "iterations per compiled train chunk (host work happens between chunks)", low=1)
    checkpoint_every_chunks: int = field(4, "chunks between periodic checkpoints (a final one is always written)", low=1)
    keep_checkpoints: int = field(3, "most recent periodic checkpoints kept (the best is kept too)", low=1)
    eval_episodes: int = field(100, "episodes for the final evaluation (0 = none)", low=0)
    mesh_pop: int = field(0, "devices the population is split over (must divide population_size; 0 = choose)", low=0)
    mesh_data: int = field(0, "devices each member's env batch is split over (must divide learner.num_envs; 0 = choose)", low=0)
    time_limit_minutes: float = field(0.0, "training wall time a run may take, minutes, resumed parts included: a chunk that would end past it is not started (0 = no limit)", low=0.0)
    memory_budget_gib: float = field(0.0, "device memory a run may use, GiB; a run whose compiled chunk needs more is refused before it starts (0 = the device's capacity)", low=0.0)


@dataclasses.dataclass(frozen=True)
class LogConfig:
    """Where metrics go."""

    tensorboard: bool = field(True, "write TensorBoard event files into the run directory")
    wandb: bool = field(False, "also log to Weights & Biases (needs the wandb package)")
    wandb_project: str = field("superlearner", "Weights & Biases project name")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: env, learner, hyperparameters, training length and logging."""

    name: str = field("experiment", "short name, used for run directories")
    description: str = field("", "one line on what this preset shows")
    env: EnvConfig = field(EnvConfig, "the environment")
    learner: LearnerConfig = field(LearnerConfig, "static learner settings")
    hparams: HparamsConfig = field(HparamsConfig, "adaptable hyperparameters (starting values)")
    alphazero: AlphaZeroConfig = field(AlphaZeroConfig, "Gumbel AlphaZero settings (learner.kind: alphazero)")
    league: LeagueConfig = field(LeagueConfig, "self-play league (two-player games)")
    arena: ArenaConfig = field(ArenaConfig, "anchors measured during training (two-player games)")
    curriculum: CurriculumConfig = field(CurriculumConfig, "autonomous curriculum over levels")
    rating: RatingConfig = field(RatingConfig, "online rating of the members: the run's measured progress (two-player games)")
    meta: MetaConfig = field(MetaConfig, "meta-learner (hyperparameter adaptation)")
    train: TrainConfig = field(TrainConfig, "run length, population, checkpoints")
    log: LogConfig = field(LogConfig, "logging")
    extensions: dict = field(dict, "sections of learners registered outside the package, by section name (written as top-level sections in YAML)")

    def section(self, name: str) -> Any:
        """The config section ``name``: a field of this class, or a registered learner's section
        (its defaults when the config does not give it)."""
        if name in self.extensions:
            return self.extensions[name]
        if hasattr(self, name):
            return getattr(self, name)
        return learner_sections()[name]()

    @property
    def iterations(self) -> int:
        """Train iterations of the whole run (each is num_envs * num_steps env steps per member)."""
        per_iteration = self.learner.num_envs * self.learner.num_steps
        return max(1, -(-self.train.total_env_steps // per_iteration))


# ----------------------------------------------------------------------------------------------
# Loading and validation.


def experiments_dir() -> Path:
    """The folder of named presets: $SUPERLEARNER_EXPERIMENTS, or ``experiments/`` of the source tree."""
    if os.environ.get(EXPERIMENTS_DIR_ENV):
        return Path(os.environ[EXPERIMENTS_DIR_ENV])
    return Path(__file__).resolve().parent.parent / "experiments"


def list_presets() -> list[str]:
    folder = experiments_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def resolve_preset(name_or_path: str) -> Path:
    """A preset name (``cartpole_ppo``) or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"{name_or_path}: no such experiment file")
        return path
    candidate = experiments_dir() / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    presets = list_presets()
    close = difflib.get_close_matches(name_or_path, presets, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown experiment {name_or_path!r}{hint} Presets: {', '.join(presets) or 'none'}")


def load_config(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Reads a preset and applies ``KEY=VALUE`` overrides (dotted keys, YAML values).

    File fields (`FILE_FIELDS`) come back absolute, so the run directory's copy of the config
    works from any folder.
    """
    path = resolve_preset(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML ({getattr(error, 'problem', error)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of config sections")
    raw = _files_relative_to(raw, path.parent)
    raw = _files_relative_to(apply_overrides(raw, overrides, source=str(path)), Path.cwd())
    return config_from_dict(raw, source=str(path))


# Config fields that name a file: a relative path written in a YAML file is relative to that
# file's folder (so a preset can ship its files next to it); on the command line, to the
# working directory.
FILE_FIELDS = (("learner", "update_rule_file"),)


def _files_relative_to(raw: dict, folder: Path) -> dict:
    raw = _deep_copy(raw)
    for section, key in FILE_FIELDS:
        node = raw.get(section)
        value = node.get(key) if isinstance(node, dict) else None
        if isinstance(value, str) and value and not Path(value).is_absolute():
            node[key] = str((folder / value).resolve())
    return raw


def apply_overrides(raw: dict, overrides, source: str = "--set") -> dict:
    raw = _deep_copy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.seed=3")
        key, _, text = item.partition("=")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part} is not a section")
        node[parts[-1]] = value
    return raw


def config_from_dict(raw: dict, source: str = "config") -> ExperimentConfig:
    """The typed config of a raw mapping (a YAML file's content). A top-level key naming the
    section of a learner registered outside the package is built with that learner's section
    type and kept in ``extensions``."""
    if isinstance(raw, dict):
        sections = learner_sections()
        extensions = {k: _build(sections[k], v, source, k + ".") for k, v in raw.items() if k in sections}
        if extensions:
            raw = {k: v for k, v in raw.items() if k not in sections}
            raw["extensions"] = extensions
    return _build(ExperimentConfig, raw, source, prefix="")


def config_to_dict(config: Any) -> dict:
    """A plain, YAML/JSON-ready dict of a config (tuples become lists)."""
    def convert(value):
        if isinstance(value, ExperimentConfig):
            fields = {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name != "extensions"}
            return {**fields, **{name: convert(section) for name, section in value.extensions.items()}}
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    return convert(config)


def describe_fields(cls=ExperimentConfig, prefix: str = "") -> list[tuple[str, str, Any]]:
    """(dotted key, description, default) for every leaf field: the config reference."""
    rows = []
    for f in dataclasses.fields(cls):
        kind = _field_type(cls, f.name)
        if dataclasses.is_dataclass(kind):
            rows.extend(describe_fields(kind, prefix + f.name + "."))
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((prefix + f.name, f.metadata.get("doc", ""), default))
    return rows


def _deep_copy(raw):
    if isinstance(raw, dict):
        return {k: _deep_copy(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_deep_copy(v) for v in raw]
    return raw


def _field_type(cls, name):
    return typing.get_type_hints(cls)[name]


def _build(cls, raw: Any, source: str, prefix: str):
    where = prefix.rstrip(".") or "top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where} must be a mapping, got {type(raw).__name__} {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else ""
            raise ConfigError(
                f"{source}: unknown key {prefix}{key}{hint} Accepted keys in {where}: {', '.join(fields)}"
            )
    values = {}
    hints = typing.get_type_hints(cls)
    for name, f in fields.items():
        kind = hints[name]
        key = prefix + name
        if name not in raw:
            continue
        value = raw[name]
        if dataclasses.is_dataclass(kind):
            values[name] = _build(kind, value, source, key + ".")
        elif name == "extensions" and cls is ExperimentConfig:
            values[name] = value  # already built by `config_from_dict`
        else:
            values[name] = _check_value(source, key, value, kind, f.metadata)
    return cls(**values)


def _as_number(value: Any) -> Any:
    """YAML 1.1 reads ``3e-4`` (no dot) as a string; accept it as the number it means."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _check_value(source: str, key: str, value: Any, kind: Any, metadata) -> Any:
    origin = typing.get_origin(kind)
    if kind is float:
        value = _as_number(value)
    elif kind is Any:
        value = [_as_number(v) for v in value] if isinstance(value, list) else _as_number(value)
    low, high = metadata.get("low"), metadata.get("high")
    if origin is Literal:
        choices = typing.get_args(kind)
        if value not in choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{source}: {key}={value!r} is not accepted{hint} Accepted: {', '.join(map(str, choices))}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key}={value!r} must be true or false")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {key}={value!r} must be an integer")
        _check_range(source, key, value, low, high)
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {key}={value!r} must be a number")
        _check_range(source, key, float(value), low, high)
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key}={value!r} must be a string")
        return value
    if kind is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} must be a mapping, got {value!r}")
        return dict(value)
    if kind is tuple:
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
        ):
            raise ConfigError(f"{source}: {key}={value!r} must be a list of positive integers")
        return tuple(value)
    if kind is Any:  # a hyperparameter: one number, or one per population member
        items = value if isinstance(value, (list, tuple)) else [value]
        if not items:
            raise ConfigError(f"{source}: {key} is an empty list; give a number or one per member")
        for item in items:
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                raise ConfigError(f"{source}: {key}={value!r} must be a number or a list of numbers")
            _check_range(source, key, float(item), low, high)
        return tuple(float(v) for v in items) if isinstance(value, (list, tuple)) else float(value)
    raise TypeError(f"unsupported config type {kind} for {key}")


def _check_range(source, key, value, low, high):
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ConfigError(f"{source}: {key}={value!r} is out of range; accepted {lo}..{hi}")


def validate_semantics(config: ExperimentConfig, source: str = "config") -> None:
    """Checks that span fields (divisibility, population-sized lists, what the learner accepts)."""
    definition = learner_def(config.learner.kind, source)
    if definition.validate is not None:
        definition.validate(config, None, source)
    section = config.section(definition.section)
    for h in definition.hparams:
        value = getattr(section, h.name)
        if isinstance(value, tuple) and len(value) != config.train.population_size:
            raise ConfigError(
                f"{source}: {definition.section}.{h.name} has {len(value)} values but train.population_size="
                f"{config.train.population_size}; give one number or {config.train.population_size}"
            )
    size = config.train.population_size
    meta = config.meta
    if meta.kind != "none" or meta.init_low or meta.init_high:
        from superlearner.meta.controllers import CURRICULUM_HPARAM_SPECS, CURRICULUM_PREFIX
        from superlearner.schema import hparam_specs

        known = [spec.name for spec in hparam_specs(definition.hparams) + CURRICULUM_HPARAM_SPECS]
        for name in list(meta.adapt) + list(meta.init_low) + list(meta.init_high):
            if name not in known:
                close = difflib.get_close_matches(str(name), known, n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                raise ConfigError(f"{source}: meta: unknown hyperparameter {name!r}{hint} Adaptable: {', '.join(known)}")
            if str(name).startswith(CURRICULUM_PREFIX):
                if config.curriculum.kind == "none":
                    raise ConfigError(f"{source}: meta: {name} is a curriculum knob, but curriculum.kind is none; "
                                      "set curriculum.kind (dr, plr, accel, sfl or lp) or drop it")
                if name in meta.adapt and meta.kind not in ("pbt", "none"):
                    raise ConfigError(f"{source}: meta.adapt: {name} is a curriculum knob, which only meta.kind pbt "
                                      f"adapts (got meta.kind={meta.kind})")
        if set(meta.init_low) != set(meta.init_high):
            raise ConfigError(f"{source}: meta.init_low and meta.init_high must name the same hyperparameters")
        if meta.kind == "pbt" and size < 2:
            raise ConfigError(f"{source}: meta.kind={meta.kind} needs train.population_size >= 2, got {size}")
    if meta.progress == "anchors":
        if meta.kind not in ("pbt", "bandit"):
            raise ConfigError(f"{source}: meta.progress=anchors is the fitness of meta.kind pbt or bandit, got meta.kind={meta.kind}")
        if not config.arena.anchors:
            raise ConfigError(f"{source}: meta.progress=anchors plays arena.anchors, which is empty; name at least one (e.g. [random, minimax:2])")
    _validate_rating(config, source)
    league = config.league
    if league.opponent_groups and config.learner.num_envs % league.opponent_groups:
        raise ConfigError(
            f"{source}: league.opponent_groups={league.opponent_groups} must divide learner.num_envs="
            f"{config.learner.num_envs} (the games split into equal groups); give a divisor, or 0 for no groups"
        )
    if league.meta_solver == "nash" and league.payoff_games < 2:
        raise ConfigError(
            f"{source}: league.meta_solver=nash solves the snapshots' payoff matrix, which games fill: "
            f"set league.payoff_games to 2 or more (e.g. 64), got {league.payoff_games}"
        )


def _validate_rating(config: ExperimentConfig, source: str) -> None:
    """The rating section's cross-field rules, and meta.progress=rating's."""
    rating, meta = config.rating, config.meta
    if rating.kind != "none" and not (rating.anchors or config.arena.anchors):
        raise ConfigError(f"{source}: rating.kind={rating.kind} plays rating.anchors (or arena.anchors), both empty; "
                          "name at least one, the scale's zero first (e.g. [random, minimax:2])")
    if meta.progress != "rating":
        return
    if rating.kind == "none":
        raise ConfigError(f"{source}: meta.progress=rating reads the online rating, but rating.kind is none; "
                          "set rating.kind=bradley_terry")
    if meta.kind not in ("pbt", "bandit"):
        raise ConfigError(f"{source}: meta.progress=rating is the fitness of meta.kind pbt or bandit, got meta.kind={meta.kind}")
    if meta.interval % rating.every_iterations:
        raise ConfigError(
            f"{source}: meta.interval={meta.interval} must be a multiple of rating.every_iterations="
            f"{rating.every_iterations}, so every meta step reads a rating measured since the last one"
        )
