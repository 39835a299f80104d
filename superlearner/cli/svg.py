"""Animated SVGs of a game or an episode (``superlearner eval --svg`` and ``play``), and grids of
pictures (galleries of levels).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import jax
import jax.numpy as jnp
import numpy as np

from superlearner.errors import UserError
from superlearner.selfplay.arena import KindFn


MAX_SVG_FRAMES = 120


SECONDS_PER_FRAME = 0.8


_SIZE = re.compile(r'<svg\b[^>]*?\bwidth="([\d.]+)"[^>]*?\bheight="([\d.]+)"')


def _text_frame(text: str) -> str:
    """A monospace SVG picture of ``text`` (for envs without an SVG rendering)."""
    lines = text.splitlines() or [""]
    width = 16 + 8 * max(len(line) for line in lines)
    height = 12 + 16 * len(lines)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for i, line in enumerate(lines):
        parts.append(
            f'<text x="8" y="{20 + 16 * i}" font-family="monospace" font-size="13" xml:space="preserve">'
            f"{escape(line)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def render_frame(env, state) -> str:
    """``env.render_svg(state)``, or the text rendering drawn as SVG when the env has none."""
    try:
        return env.render_svg(state)
    except NotImplementedError:
        return _text_frame(env.render_text(state))


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return lines + ([line] if line else [])


def animated_svg(
    frames: list[str], captions: list[str], footer: str, seconds_per_frame: float = SECONDS_PER_FRAME
) -> str:
    """One SVG that shows ``frames`` (SVG documents of equal size) in turn, looping.

    Each frame is a group whose visibility a discrete SMIL ``<animate>`` switches on for its
    time slot; the last frame is held for three slots. The last frame is also visible without
    animation, so a viewer without SMIL shows the final position. ``captions[i]`` is written
    under frame i and ``footer`` (e.g. the move list) under all of them.
    """
    if not frames:
        raise ValueError("animated_svg needs at least one frame")
    size = _SIZE.search(frames[0])
    frame_w, frame_h = (float(size.group(1)), float(size.group(2))) if size else (300.0, 300.0)
    width = max(frame_w, 360.0)
    footer_lines = _wrap(footer, max(20, int(width // 7)))
    height = frame_h + 26 + 16 * len(footer_lines) + 6
    num = len(frames)
    slots = num + 2
    duration = slots * seconds_per_frame
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:g}" height="{height:g}" '
        f'viewBox="0 0 {width:g} {height:g}">',
        f'<rect width="{width:g}" height="{height:g}" fill="white"/>',
    ]
    for i, (frame, caption) in enumerate(zip(frames, captions)):
        last = i == num - 1
        parts.append(f'<g visibility="{"visible" if last else "hidden"}">')
        if num > 1:
            start, end = i / slots, (i + 1) / slots
            if i == 0:
                values, times = "visible;hidden", f"0;{end:.6g}"
            elif last:
                values, times = "hidden;visible", f"0;{start:.6g}"
            else:
                values, times = "hidden;visible;hidden", f"0;{start:.6g};{end:.6g}"
            parts.append(
                f'<animate attributeName="visibility" calcMode="discrete" values="{values}" '
                f'keyTimes="{times}" dur="{duration:g}s" repeatCount="indefinite"/>'
            )
        parts.append(frame)
        parts.append(
            f'<text x="6" y="{frame_h + 18:g}" font-family="sans-serif" font-size="13">{escape(caption)}</text>'
        )
        parts.append("</g>")
    for k, line in enumerate(footer_lines):
        parts.append(
            f'<text x="6" y="{frame_h + 38 + 16 * k:g}" font-family="monospace" font-size="12">{escape(line)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def grid_svg(pictures: list[str], captions: list[str], columns: int, title: str = "") -> str:
    """One SVG of ``pictures`` (SVG documents) in a grid ``columns`` wide, left to right and then
    down, ``captions[i]`` under picture i and ``title`` above all (a gallery of levels)."""
    if not pictures:
        raise ValueError("grid_svg needs at least one picture")
    sizes = [_SIZE.search(picture) for picture in pictures]
    cell_w = max(float(m.group(1)) if m else 300.0 for m in sizes)
    cell_h = max(float(m.group(2)) if m else 300.0 for m in sizes) + 20
    gap, top = 10.0, 26.0 if title else 0.0
    rows = math.ceil(len(pictures) / columns)
    width = columns * cell_w + (columns + 1) * gap
    height = top + rows * cell_h + (rows + 1) * gap
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:g}" height="{height:g}" viewBox="0 0 {width:g} {height:g}">',
        f'<rect width="{width:g}" height="{height:g}" fill="white"/>',
    ]
    if title:
        parts.append(f'<text x="{gap:g}" y="18" font-family="sans-serif" font-size="14">{escape(title)}</text>')
    for i, (picture, caption) in enumerate(zip(pictures, captions)):
        x = gap + (i % columns) * (cell_w + gap)
        y = top + gap + (i // columns) * (cell_h + gap)
        parts.append(
            f'<g transform="translate({x:g},{y:g})">{picture}<text x="2" y="{cell_h - 6:g}" '
            f'font-family="sans-serif" font-size="12">{escape(caption)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _thin(count: int) -> list[int]:
    """Indices of the frames kept out of ``count``: all, or evenly spaced with the last."""
    if count <= MAX_SVG_FRAMES:
        return list(range(count))
    return sorted(set(np.linspace(0, count - 1, MAX_SVG_FRAMES).round().astype(int).tolist()))


def game_svg(
    env,
    players: list[tuple[str, KindFn, Any]],
    key: jax.Array,
    opening_moves: int = 0,
    params=None,
    max_moves: int = 10_000,
) -> tuple[str, dict]:
    """Plays one game (or, with one player, one episode) and draws it as an animated SVG.

    Args:
      env: the env.
      players: per seat, ``(name, kind, kind_params)``.
      key: consumed.
      opening_moves: the first plies are uniformly random legal moves (as in the arena).
      params: the level (``env.default_params`` when None).
      max_moves: a bound on the game's length.

    Returns:
      ``(svg, summary)``, the summary with ``moves`` (text), ``movers`` and ``rewards``.
    """
    from superlearner.selfplay.anchors import random_act

    reset = jax.jit(env.reset)
    step = jax.jit(env.step)
    acts = [
        jax.jit(lambda p, k, s, kind=kind: kind(p, k, jax.tree.map(lambda x: x[None], s))[0])
        for _, kind, _ in players
    ]
    opening = jax.jit(random_act)
    reset_key, key = jax.random.split(key)
    state = reset(reset_key, params)
    states, moves, movers = [state], [], []
    rewards = np.zeros(env.num_players)
    while not bool(state.terminated | state.truncated) and len(moves) < max_moves:
        mover = int(state.current_player)
        key, act_key, step_key = jax.random.split(key, 3)
        if len(moves) < opening_moves:
            action = int(opening(act_key, state))
            movers.append("opening")
        else:
            name, _, kind_params = players[mover]
            action = int(acts[mover](kind_params, act_key, state))
            movers.append(name)
        moves.append(env.action_to_text(action))
        state = step(state, jnp.int32(action), step_key, params)
        rewards += np.asarray(state.rewards, np.float64)
        states.append(state)
    keep = _thin(len(states))
    frames = [render_frame(env, states[i]) for i in keep]
    captions = []
    for i in keep:
        if i == 0:
            captions.append("start")
        else:
            captions.append(f"move {i}: {movers[i - 1]} plays {moves[i - 1]}")
    names = " vs ".join(f"{name} (player {seat})" for seat, (name, _, _) in enumerate(players))
    result = ", ".join(f"player {p} {r:+g}" for p, r in enumerate(rewards))
    captions[-1] += f"  |  result: {result}"
    footer = f"{env.id}: {names}. Moves: {' '.join(moves) or '(none)'}. Result: {result}."
    summary = {"moves": moves, "movers": movers, "rewards": rewards.tolist()}
    return animated_svg(frames, captions, footer), summary


def write_text(path: str, text: str, option: str) -> None:
    try:
        Path(path).write_text(text)
    except OSError as error:
        raise UserError(f"{option} {path}: cannot write the file ({error.strerror or error})") from None
