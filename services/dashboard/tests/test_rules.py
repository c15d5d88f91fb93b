"""Pure rules: days in Beijing time, drill-down, ratios, cell neutralisation."""

from datetime import UTC, date, datetime

from dashboard.domain.rules import child_region, cutoff_moment, dimension_label, label, local_day, neutralise, ratio


def test_a_day_is_a_day_in_beijing() -> None:
    assert local_day(datetime(2026, 11, 20, 15, 59, tzinfo=UTC)) == date(2026, 11, 20)
    assert local_day(datetime(2026, 11, 20, 16, 0, tzinfo=UTC)) == date(2026, 11, 21)  # midnight in Beijing
    assert cutoff_moment(date(2026, 11, 20), 20).astimezone(UTC) == datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_drill_down_goes_one_level_at_a_time() -> None:
    assert child_region("440305", None) == "440000"
    assert child_region("440305", "440000") == "440300"
    assert child_region("440305", "440300") == "440305"
    assert child_region("110105", "440000") is None
    assert child_region("440305", "440305") is None


def test_ratios_labels_and_neutralised_cells() -> None:
    assert ratio(1, 2) == 0.5 and ratio(0, 0) is None and ratio(3, 0) is None
    assert label("unclassified", "zh") == "阳性未分类" and label("unclassified", "en") == "positives not yet classified"
    assert dimension_label("centralized/hotel", "zh") == "集中隔离/隔离酒店"
    for dangerous in ("=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"):
        assert neutralise(dangerous) == "'" + dangerous
    assert neutralise("正常文本") == "正常文本" and neutralise(-5) == -5 and neutralise(None) is None
