"""Rollback's decision rule on scripted probability sequences (engine/rollback.py)."""
from engine.rollback import RollbackRule, StepStats

CALM = StepStats(entropy=1.0, p_max=0.8, p_token=0.8)      # the argmax, a peaked distribution
RISKY = StepStats(entropy=1.0, p_max=0.8, p_token=0.05)    # 0.05 < 0.1 · 0.8
FLAT = StepStats(entropy=3.0, p_max=0.5, p_token=0.5)      # entropy +2 bits over the baseline
UNSURE = StepStats(entropy=1.2, p_max=0.3, p_token=0.3)    # p_max 0.3 ≤ 0.5 · 0.8


def run(rule, script, retries=0):
    return [rule.observe(i, st, retries) for i, st in enumerate(script)]


def test_calm_steps_are_released_at_once():
    rule = RollbackRule()
    assert [a for a, _ in run(rule, [CALM] * 5)] == ["release"] * 5


def test_risky_draw_followed_by_calm_steps_is_held_then_released():
    rule = RollbackRule(window=2)
    acts = [a for a, _ in run(rule, [CALM, CALM, RISKY, CALM, CALM, CALM])]
    assert acts == ["release", "release", "hold", "hold", "release", "release"]
    assert rule.total == 0


def test_entropy_rise_after_a_risky_draw_rolls_back_to_it():
    rule = RollbackRule(window=2)
    out = run(rule, [CALM, CALM, RISKY, CALM, FLAT])
    assert [a for a, _ in out] == ["release", "release", "hold", "hold", "rollback"]
    assert rule.undone_from == 2 and "entropy" in out[-1][1]
    assert len(rule.history) == 2          # the stats of the undone steps are forgotten
    assert rule.total == 1


def test_pmax_fall_counts_as_a_collapse_and_can_be_turned_off():
    rule = RollbackRule()
    out = run(rule, [CALM, RISKY, UNSURE])
    assert out[-1][0] == "rollback" and "p_max" in out[-1][1]
    rule = RollbackRule(pmax_ratio=0.0)
    assert [a for a, _ in run(rule, [CALM, RISKY, UNSURE, CALM])] == ["release", "hold", "hold", "release"]


def test_a_collapse_outside_the_window_is_not_blamed_on_the_draw():
    rule = RollbackRule(window=1)
    assert [a for a, _ in run(rule, [CALM, RISKY, CALM, FLAT])] == ["release", "hold", "release", "release"]


def test_the_baseline_is_the_recent_median_including_the_risky_step():
    rule = RollbackRule(baseline=3, entropy_rise=1.5)
    hot = StepStats(entropy=2.0, p_max=0.8, p_token=0.8)
    # baseline median(2, 2, 1) = 2 bits: a following step at 3 bits is a rise of 1 only
    acts = [a for a, _ in run(rule, [CALM, hot, hot, RISKY, FLAT, CALM])]
    assert acts == ["release", "release", "release", "hold", "hold", "release"]


def test_retries_per_position_and_per_answer_are_bounded():
    rule = RollbackRule(retries=2)
    assert rule.observe(0, RISKY, retries_here=2) == ("release", None)   # this position is spent
    rule = RollbackRule(max_total=1)
    run(rule, [RISKY, FLAT])
    assert rule.total == 1
    assert rule.observe(0, RISKY, 0) == ("release", None)                 # the answer's budget is spent


def test_greedy_draws_are_never_risky():
    rule = RollbackRule(risk=1.0)
    assert not rule.risky(StepStats(entropy=5.0, p_max=0.1, p_token=0.1))
